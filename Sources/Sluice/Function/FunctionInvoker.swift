import Logging

/// Runs a function on a chunk and checks what it answered: the one place where both triggers
/// (stream and `POST /invoke`) call the function value, so both see the same outcomes.
public struct FunctionInvoker: Sendable {
    /// The function's manifest.
    public let manifest: Manifest
    /// The function, wrapped in its middleware.
    public let function: any EventFunction
    /// The base logger.
    public let logger: Logger

    /// Creates an invoker.
    public init(manifest: Manifest, function: any EventFunction, logger: Logger) {
        self.manifest = manifest
        self.function = function
        self.logger = logger
    }

    /// The function's masking middleware (`pii-mask`), when it declares one: what is kept of a
    /// chunk the function could not handle (a dead letter) is masked by it, so that a function
    /// that masks never stores a raw chunk.
    public var storedEventMask: (any StoredEventMasking)? {
        var current: any EventFunction = function
        while let chain = current as? MiddlewareChain {
            if let mask = chain.middleware as? any StoredEventMasking { return mask }
            current = chain.next
        }
        return nil
    }

    /// Runs the function on `chunk` as delivery number `attempt`.
    /// - Returns: one outcome per event, every `forward` naming a declared output (or none).
    /// - Throws: ``FunctionError``: what the function threw, classified, or the permanent
    ///   `bad_outcomes` when it answered the wrong number of outcomes or an undeclared output.
    public func invoke(_ chunk: Chunk, attempt: Int) async throws(FunctionError) -> [Outcome] {
        let context = FunctionContext(
            functionName: manifest.name, logger: logger, chunk: chunk, attempt: attempt,
            deadline: .now + manifest.visibilityTimeout, environment: manifest.environment)
        let outcomes: [Outcome]
        do {
            outcomes = try await function.handle(chunk, context: context)
        } catch {
            throw FunctionError.classify(error)
        }
        guard outcomes.count == chunk.events.count else {
            throw .permanent("bad_outcomes", "the function answered \(outcomes.count) outcomes for \(chunk.events.count) events")
        }
        for outcome in outcomes {
            let named: String?
            switch outcome {
            case .forward(_, let output), .fanOut(_, let output): named = output
            case .drop, .quarantine: named = nil
            }
            guard let output = named, !manifest.outputs.contains(output) else { continue }
            throw .permanent("bad_outcomes", "the function forwarded to '\(output)', which is not among its outputs")
        }
        return outcomes
    }
}
