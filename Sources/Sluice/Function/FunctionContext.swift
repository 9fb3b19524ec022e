import Logging

/// The per-invocation context handed to a function: a logger tagged with the function, job,
/// chunk and trace ids, the attempt number and the deadline.
public struct FunctionContext: Sendable {
    /// The function's name.
    public var functionName: String
    /// Logger with `function`, `job`, `chunk` and `trace` metadata already set.
    public var logger: Logger
    /// The chunk's job, if any.
    public var jobID: String?
    /// The chunk id (stream entry id).
    public var chunkID: String
    /// The trace id carried with the chunk.
    public var traceID: String?
    /// 1 on the first delivery, 2 on the first retry, …
    public var attempt: Int
    /// The instant by which the invocation must finish (the visibility timeout after it began).
    public var deadline: ContinuousClock.Instant
    /// The function's manifest environment merged over nothing else: configuration values only.
    public var environment: [String: String]

    /// Creates a context; `logger` gets the invocation metadata added.
    public init(
        functionName: String, logger: Logger, chunk: Chunk, attempt: Int,
        deadline: ContinuousClock.Instant, environment: [String: String] = [:]
    ) {
        var logger = logger
        logger[metadataKey: "function"] = .string(functionName)
        logger[metadataKey: "chunk"] = .string(chunk.id)
        if let job = chunk.jobID { logger[metadataKey: "job"] = .string(job) }
        if let trace = chunk.traceID { logger[metadataKey: "trace"] = .string(trace) }
        self.functionName = functionName
        self.logger = logger
        self.jobID = chunk.jobID
        self.chunkID = chunk.id
        self.traceID = chunk.traceID
        self.attempt = attempt
        self.deadline = deadline
        self.environment = environment
    }
}
