import Hummingbird
import ServiceLifecycle
import Sluice

/// A function invoked over HTTP: it contributes routes to the process's router.
///
/// The protocol lives here, not in the core, because its routes are Hummingbird routes; the
/// core stays free of any HTTP library.
public protocol HTTPFunction: FunctionHandler {
    /// Adds the function's routes.
    func addRoutes(to router: Router<SluiceRequestContext>)

    /// Adds middleware that sees every request of the process (the gateway's checks). Called
    /// for every HTTP function before any routes are added.
    func addMiddleware(to router: Router<SluiceRequestContext>)

    /// Work the function does in the background while the process runs (a reaper, a
    /// refresher); stopped with the process, before the HTTP server.
    var backgroundServices: [any Service] { get }
}

extension HTTPFunction {
    public var backgroundServices: [any Service] { [] }
    public func addMiddleware(to router: Router<SluiceRequestContext>) {}
}
