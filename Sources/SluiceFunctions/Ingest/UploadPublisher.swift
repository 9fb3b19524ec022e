import Foundation
import Hummingbird
import Logging
import NIOCore
import Sluice
import SluiceUploads
import SluiceHTTP
import SluiceNotify
import SluicePostgres
import ServiceLifecycle
import SluiceRedis

/// Collects an upload's events into chunks and appends them to the outputs (and malformed
/// records to the quarantine stream), counting what it received. Events are kept as the chunk's
/// JSON array, written as they come; a CSV record arrives already written as a row, and a chunk
/// of rows carries their shape once (``ChunkCodec`` version 2). One chunk is appended while the
/// next is decoded (the Redis round trip no longer stalls the body), never more: chunks stay in
/// order and memory stays at two chunks.
///
/// A chunk is cut at `batch` events or when the next event would take it past `maxChunkBytes`
/// (its `events`, or its `shape` and `rows`), whichever comes first, so that no stage ever
/// holds more than that of one chunk. An event whose JSON alone is larger (a record within
/// `max_record_bytes` that grew when written as JSON, a text line of escapes) is quarantined
/// as `record_too_long` with the start of its text.
struct UploadPublisher {
    let jobID: String
    let traceID: String
    let batch: Int
    let maxChunkBytes: Int
    /// The streams chunks are appended to: the manifest's outputs, until ``route`` names others.
    var outputs: [String]
    let keys: StreamKeys
    let redis: RedisClient
    let function: String
    /// How much of an event too large for a chunk the quarantine keeps.
    let maxQuarantinedBytes: Int
    /// The dataset the upload's records belong to (nil: events).
    var dataset: DatasetReference?
    /// Makes the dataset from the first chunk's records, when it does not exist yet: called
    /// once, before that chunk is appended.
    var detect: (@Sendable ([JSONValue]) async throws -> DatasetReference)?
    /// The streams the dataset's records enter by (its chain's first function), asked once, at
    /// the first chunk (after ``detect``); nil or a nil answer: ``outputs``.
    var route: (@Sendable (DatasetReference?) async throws -> [String]?)?
    /// The chunk's events (or rows) so far: `[` and the events, comma-separated.
    var events: [UInt8] = [UInt8(ascii: "[")]
    var eventCount = 0
    /// The shape of the chunk's rows; nil for a chunk of events.
    var shape: [UInt8]?
    /// The quarantine chunk so far: `[` and the items, comma-separated.
    var quarantined: [UInt8] = [UInt8(ascii: "[")]
    var quarantinedCount = 0
    var received = 0
    var bytes = 0
    /// The append of the previous chunk, still in flight.
    var pending: Task<Void, any Error>?

    init(jobID: String, traceID: String, batch: Int, maxChunkBytes: Int, outputs: [String], keys: StreamKeys, redis: RedisClient,
         function: String, maxQuarantinedBytes: Int = UploadLimits().maxQuarantinedBytes) {
        self.jobID = jobID
        self.traceID = traceID
        self.batch = batch
        self.maxChunkBytes = maxChunkBytes
        self.outputs = outputs
        self.keys = keys
        self.redis = redis
        self.function = function
        self.maxQuarantinedBytes = maxQuarantinedBytes
    }

    var isFull: Bool { eventCount >= batch || quarantinedCount >= batch }

    /// Adds an event to a chunk of events (flushed first when it holds rows, or when the event
    /// would take it past `maxChunkBytes`).
    mutating func add(_ event: Event, line: Int = 0) async throws {
        if eventCount > 0, shape != nil { try await flush() }
        let start = events.count
        if eventCount > 0 { events.append(UInt8(ascii: ",")) }
        event.value.write(into: &events)
        // `]` closes the array: the chunk's field is `events.count + 1` bytes.
        guard events.count + 1 > maxChunkBytes else {
            eventCount += 1
            received += 1
            return
        }
        // Too large with what is there already: the event opens the next chunk (copied over
        // once, at a chunk boundary only), or, too large for any chunk, goes to the quarantine.
        let separator = eventCount > 0 ? 1 : 0
        let written = Array(events[(start + separator)...])
        events.removeSubrange(start...)
        guard written.count + 2 <= maxChunkBytes else {
            try await quarantine(["reason": "record_too_long", "function": .string(function), "line": .int(Int64(line)),
                                  "raw": .string(String(decoding: written.prefix(maxQuarantinedBytes), as: UTF8.self))])
            return
        }
        try await flush()
        events.append(contentsOf: written)
        eventCount = 1
        received += 1
    }

    /// Adds a row (a JSON array's bytes) whose event is `shape` with its values in place, to a
    /// chunk of rows of that shape (flushed first when it holds anything else, or when the row
    /// would take it past `maxChunkBytes`; an upload's records are all rows of one shape or all
    /// events, and arrays holding one buffer compare at once).
    mutating func add(row: [UInt8], shape: [UInt8], line: Int = 0) async throws {
        guard shape.count + row.count + 2 <= maxChunkBytes else {
            try await quarantine(["reason": "record_too_long", "function": .string(function), "line": .int(Int64(line)),
                                  "raw": .string(String(decoding: row.prefix(maxQuarantinedBytes), as: UTF8.self))])
            return
        }
        if eventCount > 0, self.shape != shape || shape.count + events.count + 1 + row.count + 1 > maxChunkBytes { try await flush() }
        if eventCount > 0 { events.append(UInt8(ascii: ",")) }
        self.shape = shape
        events.append(contentsOf: row)
        eventCount += 1
        received += 1
    }

    /// Adds an item to the quarantine chunk (appended with the next flush; flushed now when
    /// it holds `batch` items, or first when the item would take it past `maxChunkBytes`).
    /// Items are small: a record's text is cut to `maxQuarantinedBytes`.
    mutating func quarantine(_ item: JSONObject) async throws {
        var written: [UInt8] = []
        JSONValue.object(item).write(into: &written)
        if quarantinedCount > 0, quarantined.count + 1 + written.count + 1 > maxChunkBytes { try await flush() }
        if quarantinedCount > 0 { quarantined.append(UInt8(ascii: ",")) }
        quarantined.append(contentsOf: written)
        quarantinedCount += 1
        received += 1
        if quarantinedCount >= batch { try await flush() }
    }

    /// Starts appending what was collected, once the previous append is done.
    mutating func flush() async throws {
        try await pending?.value
        pending = nil
        let receivedAt = PipelineClock.milliseconds()
        var appends: [(stream: String, fields: [(String, [UInt8])])] = []
        if eventCount > 0 {
            events.append(UInt8(ascii: "]"))
            if let detect {
                let records: [JSONValue]
                if let shape {
                    guard case .array(let rows) = try JSONParser().parse(events) else { throw UploadPublisherError.unreadable }
                    let layout = try RowShape(json: shape)
                    records = try rows.map { row in try layout.event(row) }
                } else {
                    guard case .array(let values) = try JSONParser().parse(events) else { throw UploadPublisherError.unreadable }
                    records = values
                }
                dataset = try await detect(records)
                self.detect = nil
            }
            if let route {
                if let streams = try await route(dataset) { outputs = streams }
                self.route = nil
            }
            let fields = if let shape {
                ChunkCodec.encode(rowsJSON: events, shapeJSON: shape, count: eventCount, jobID: jobID, traceID: traceID, receivedAt: receivedAt,
                                  dataset: dataset)
            } else {
                ChunkCodec.encode(eventsJSON: events, count: eventCount, jobID: jobID, traceID: traceID, receivedAt: receivedAt, dataset: dataset)
            }
            shape = nil
            for output in outputs { appends.append((keys.stream(output), fields)) }
            events.removeAll(keepingCapacity: events.capacity <= 2 * maxChunkBytes)
            events.append(UInt8(ascii: "["))
            eventCount = 0
        }
        if quarantinedCount > 0 {
            quarantined.append(UInt8(ascii: "]"))
            appends.append((keys.stream("quarantine"),
                            ChunkCodec.encode(eventsJSON: quarantined, count: quarantinedCount, jobID: jobID, traceID: traceID, receivedAt: receivedAt,
                                              dataset: dataset)))
            quarantined.removeAll(keepingCapacity: true)
            quarantined.append(UInt8(ascii: "["))
            quarantinedCount = 0
        }
        guard !appends.isEmpty else { return }
        let redis = redis
        pending = Task {
            for append in appends { _ = try await redis.add(stream: append.stream, fields: append.fields) }
        }
    }

    /// Appends what is left and waits until every chunk is appended.
    mutating func finish() async throws {
        try await flush()
        try await pending?.value
        pending = nil
    }

    /// Waits for the append in flight, whatever its outcome (the upload is being refused).
    mutating func settle() async {
        _ = try? await pending?.value
        pending = nil
    }
}

enum UploadPublisherError: Error {
    /// The chunk it wrote did not read back (a bug).
    case unreadable
}
