/// A function invoked with chunks of events, by a stream trigger or synchronously over HTTP.
///
/// The stream trigger and `POST /invoke` call the same value.
public protocol EventFunction: FunctionHandler {
    /// Handles one chunk and answers one outcome per event, in order.
    ///
    /// - Throws: a ``FunctionError`` (or any error, treated as retryable) to fail the whole
    ///   chunk; nothing of a failed chunk takes effect.
    func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome]
}

/// An ``EventFunction`` made from a closure.
public struct ClosureEventFunction: EventFunction {
    let body: @Sendable (Chunk, FunctionContext) async throws -> [Outcome]

    /// Wraps `body`.
    public init(_ body: @escaping @Sendable (Chunk, FunctionContext) async throws -> [Outcome]) {
        self.body = body
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        try await body(chunk, context)
    }
}

/// An ``EventFunction`` that decides each event on its own, synchronously.
public protocol PerEventFunction: EventFunction {
    /// Decides one event.
    func handle(_ event: Event, context: FunctionContext) throws -> Outcome
}

extension PerEventFunction {
    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(chunk.events.count)
        for event in chunk.events {
            outcomes.append(try handle(event, context: context))
        }
        return outcomes
    }
}
