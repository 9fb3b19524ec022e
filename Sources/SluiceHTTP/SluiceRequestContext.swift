import Hummingbird

/// The request context of every Sluice router: Hummingbird's core context plus the caller that
/// ``CallerMiddleware`` verified. The caller lives here, not in headers: a header is text a
/// client or a function could have written, and a list of roles joined into one header is
/// split differently than it was joined (`x,admin`).
public struct SluiceRequestContext: RequestContext {
    /// Hummingbird's own per-request state.
    public var coreContext: CoreRequestContextStorage
    /// The caller of a request that ``CallerMiddleware`` checked; `nil` before it (and on the
    /// open probes and metrics).
    public var caller: Caller?

    /// A context for a request `source` serves, with no caller yet.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        caller = nil
    }
}
