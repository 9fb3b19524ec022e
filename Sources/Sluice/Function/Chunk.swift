/// Up to `batch` events carried by one stream entry: the unit of delivery, acknowledgement and retry.
public struct Chunk: Sendable {
    /// The stream entry id that carried the chunk (`1700000000000-0`), or a synthetic id for
    /// synchronous invocations (`invoke-…`).
    public var id: String
    /// The job the events belong to, when they came from an upload.
    public var jobID: String?
    /// The W3C trace id that follows the events across every stage.
    public var traceID: String?
    /// The events, in order.
    public var events: [Event]

    /// Creates a chunk.
    public init(id: String, jobID: String? = nil, traceID: String? = nil, events: [Event]) {
        self.id = id
        self.jobID = jobID
        self.traceID = traceID
        self.events = events
    }
}
