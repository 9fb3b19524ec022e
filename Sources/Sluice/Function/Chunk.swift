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
    /// The stream entry that first carried this chunk, when it is carried again by another
    /// entry (a dead letter redriven): the chunk keeps its identity across the move.
    public var origin: String?
    /// When the upload's events were accepted (Unix milliseconds), carried to the warehouse's
    /// `received_at` so that latency can be read from the data.
    public var receivedAt: Int64?
    /// The dataset the events belong to, and the version of its spec they were received
    /// under; nil for chunks without one (the `events` dataset).
    public var dataset: DatasetReference?

    /// Creates a chunk.
    public init(id: String, jobID: String? = nil, traceID: String? = nil, events: [Event], origin: String? = nil,
                receivedAt: Int64? = nil, dataset: DatasetReference? = nil) {
        self.dataset = dataset
        self.id = id
        self.jobID = jobID
        self.traceID = traceID
        self.events = events
        self.origin = origin
        self.receivedAt = receivedAt
    }

    /// The name of the dataset the events belong to (`events` when the chunk names none).
    public var datasetName: String { dataset?.name ?? DatasetReference.events }

    /// What identifies the chunk for idempotence (deduplication marks, ledgers): the entry
    /// that first carried it.
    public var identity: String { origin ?? id }
}

/// A dataset named by a chunk: its name and the version of its spec (``DatasetSpec``) the
/// events were received under. In a stream entry's `dataset` field as `NAME@VERSION`.
public struct DatasetReference: Sendable, Hashable, CustomStringConvertible {
    /// The dataset of chunks that name none.
    public static let events = "events"

    public var name: String
    public var version: Int

    public init(name: String, version: Int) {
        self.name = name
        self.version = version
    }

    /// Reads `NAME@VERSION`; nil for anything else.
    public init?(_ text: String) {
        guard let at = text.lastIndex(of: "@"), let version = Int(text[text.index(after: at)...]), version >= 0,
              at > text.startIndex
        else { return nil }
        name = String(text[..<at])
        self.version = version
    }

    public var description: String { "\(name)@\(version)" }
}
