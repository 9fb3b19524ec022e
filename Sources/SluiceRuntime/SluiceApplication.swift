@_exported import Sluice
import SluiceFunctions

/// The `sluice` command line with functions of your own beside the built-in ones: a package of
/// yours depends on Sluice, registers its functions and runs the whole CLI (`serve`, `dev`,
/// `invoke`, `dlq`, `render`, …) in its own binary.
///
/// ```swift
/// import SluiceRuntime
///
/// var app = SluiceApplication()
/// app.register("fraud", FraudScore.self)      // a CodableFunction
/// await app.run()
/// ```
///
/// A function named in a manifest's `handler` (`functions/fraud/function.yaml`:
/// `handler: fraud`) is then built from the registration. A name of a built-in handler replaces it.
public struct SluiceApplication: Sendable {
    private var registrations: [@Sendable (inout PipelineRegistry) -> Void] = []

    public init() {}

    /// Registers the handler `name`, built from the function's setup (its manifest, logger,
    /// configuration and the process's clients) as an event function of chunks.
    public mutating func register(_ name: String, factory: @escaping @Sendable (PipelineSetup) async throws -> any EventFunction) {
        registrations.append { $0.register(name) { try await factory($0) } }
    }

    /// Registers the handler `name` as a ``CodableFunction``: its manifest's `config` decoded as
    /// `F.Config`, each event decoded as `F.Input`.
    public mutating func register<F: CodableFunction>(_ name: String, _ type: F.Type) {
        registrations.append { $0.register(name) { try CodableEventFunction<F>(manifest: $0.manifest) } }
    }

    /// Registers the middleware `name` (for manifests' `middleware` lists).
    public mutating func registerMiddleware(_ name: String, factory: @escaping @Sendable (PipelineSetup) throws -> any Middleware) {
        registrations.append { $0.registerMiddleware(name, factory: factory) }
    }

    /// Runs the command line with `arguments` (nil: the process's own) and the functions
    /// registered so far; exits when the command ends.
    public func run(arguments: [String]? = nil) async {
        let registrations = registrations
        if !registrations.isEmpty {
            BuiltinFunctions.add { registry in for registration in registrations { registration(&registry) } }
        }
        await SluiceCommand.main(arguments: arguments)
    }
}
