/// A wrapper around an ``EventFunction``, declared by name in a manifest and applied in the
/// declared order (the first name is the outermost wrapper).
public protocol Middleware: Sendable {
    /// Handles a chunk, calling `next` (the rest of the chain) zero or one time.
    func handle(_ chunk: Chunk, context: FunctionContext, next: any EventFunction) async throws -> [Outcome]
}

/// A middleware that masks the events it is given (the personal-data mask): what a runtime
/// keeps of a chunk the function could not handle (a dead letter) passes through it first, so
/// a function that masks never has a raw event stored.
public protocol StoredEventMasking: Middleware {
    /// `value` as it may be stored.
    func mask(_ value: JSONValue) -> JSONValue
    /// `chunk`'s events as they may be stored (a middleware that masks more fields for some
    /// chunks, such as a dataset's personal fields, masks them here too).
    func masked(_ chunk: Chunk) async -> Chunk
}

extension StoredEventMasking {
    public func masked(_ chunk: Chunk) async -> Chunk {
        var masked = chunk
        masked.events = chunk.events.map { Event(mask($0.value)) }
        return masked
    }
}

/// An ``EventFunction`` made of middleware around a handler.
public struct MiddlewareChain: EventFunction {
    let middleware: any Middleware
    let next: any EventFunction

    /// Wraps `handler` in `middleware`, the first element outermost.
    public static func wrap(_ handler: any EventFunction, in middleware: [any Middleware]) -> any EventFunction {
        middleware.reversed().reduce(handler) { inner, outer in
            MiddlewareChain(middleware: outer, next: inner)
        }
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        try await middleware.handle(chunk, context: context, next: next)
    }
}

/// Fails the chunk with the retryable error `deadline_exceeded` when the rest of the chain has
/// not answered by the context's deadline, so a hung dependency cannot hold a chunk forever.
public struct DeadlineMiddleware: Middleware {
    /// Creates the middleware.
    public init() {}

    public func handle(_ chunk: Chunk, context: FunctionContext, next: any EventFunction) async throws -> [Outcome] {
        try await withThrowingTaskGroup(of: [Outcome]?.self) { group in
            group.addTask { try await next.handle(chunk, context: context) }
            group.addTask {
                try await Task.sleep(until: context.deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let outcomes = first else {
                throw FunctionError.retryable("deadline_exceeded", "the function did not finish before its deadline")
            }
            return outcomes
        }
    }
}
