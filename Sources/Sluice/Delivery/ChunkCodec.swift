/// Turns chunks into stream entry fields and back.
///
/// An entry holds `v` (format version), `n` (event count), and, when known, `job`, `trace`,
/// `origin` (the entry that first carried the chunk) and `received` (when the events were
/// accepted, Unix milliseconds) and `dataset` (`NAME@VERSION`, ``DatasetReference``); then the events, in one of two forms:
/// - version `1`: `events`, a compact JSON array of the events;
/// - version `2` (events of one shape, a CSV upload's): `shape`, a JSON object whose leaves are
///   column numbers (`{"user":{"id":0},"amount":1}`), and `rows`, a JSON array of rows, each an
///   array with one value per column, `null` for none. A row's event is the shape with each
///   column replaced by its value; a `null` leaves the member out, and an object left empty by
///   that goes too. The keys are written once per chunk, not once per event: the chunk is about
///   half the size.
///
/// Field values are bytes; the field order is fixed.
public enum ChunkCodec {
    /// The format version of chunks of events.
    public static let version = "1"
    /// The format version of chunks of rows of one shape.
    public static let rowsVersion = "2"

    /// A stream entry that is not a chunk this build can read.
    public struct DecodingError: Error, Sendable, Equatable, CustomStringConvertible {
        /// `chunk_missing_field`, `chunk_bad_version`, `chunk_bad_events`, `chunk_bad_shape`, `chunk_count_mismatch`, `chunk_bad_dataset`.
        public var code: String
        /// Details, never the content.
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    /// The entry fields for `events` of job `jobID` with trace `traceID`.
    public static func encode(events: some Collection<Event>, jobID: String?, traceID: String?, origin: String? = nil,
                              receivedAt: Int64? = nil, dataset: DatasetReference? = nil) -> [(String, [UInt8])] {
        var body: [UInt8] = []
        body.reserveCapacity(events.count * 512)
        body.append(UInt8(ascii: "["))
        var first = true
        for event in events {
            if !first { body.append(UInt8(ascii: ",")) }
            first = false
            event.value.write(into: &body)
        }
        body.append(UInt8(ascii: "]"))
        return encode(eventsJSON: body, count: events.count, jobID: jobID, traceID: traceID, origin: origin, receivedAt: receivedAt,
                      dataset: dataset)
    }

    /// The entries for `events`, as few as keep each entry's `events` within `maxBytes`: one
    /// entry when they fit (the usual case), else cut where the next event would go past it; an
    /// event larger than `maxBytes` goes alone in its entry. Each event is written once.
    public static func encode(events: some Collection<Event>, maxBytes: Int, jobID: String?, traceID: String?, origin: String? = nil,
                              receivedAt: Int64? = nil, dataset: DatasetReference? = nil) -> [[(String, [UInt8])]] {
        var entries: [[(String, [UInt8])]] = []
        var body: [UInt8] = []
        body.reserveCapacity(min(events.count * 512, maxBytes))
        body.append(UInt8(ascii: "["))
        var count = 0
        for event in events {
            let start = body.count
            if count > 0 { body.append(UInt8(ascii: ",")) }
            event.value.write(into: &body)
            guard count > 0, body.count + 1 > maxBytes else {
                count += 1
                continue
            }
            // The event opens the next entry.
            let written = Array(body[(start + 1)...])
            body.removeSubrange(start...)
            body.append(UInt8(ascii: "]"))
            entries.append(encode(eventsJSON: body, count: count, jobID: jobID, traceID: traceID, origin: origin, receivedAt: receivedAt,
                                  dataset: dataset))
            body = [UInt8(ascii: "[")] + written
            count = 1
        }
        body.append(UInt8(ascii: "]"))
        entries.append(encode(eventsJSON: body, count: count, jobID: jobID, traceID: traceID, origin: origin, receivedAt: receivedAt,
                              dataset: dataset))
        return entries
    }

    /// The entry fields for `count` events already written as a JSON array (`eventsJSON`).
    public static func encode(eventsJSON: [UInt8], count: Int, jobID: String?, traceID: String?, origin: String? = nil,
                              receivedAt: Int64? = nil, dataset: DatasetReference? = nil) -> [(String, [UInt8])] {
        var fields = header(version: version, count: count, jobID: jobID, traceID: traceID, origin: origin, receivedAt: receivedAt,
                            dataset: dataset)
        fields.append(("events", eventsJSON))
        return fields
    }

    /// The entry fields for `count` rows already written as a JSON array of arrays (`rowsJSON`),
    /// whose events have the shape `shapeJSON` (see the type's documentation).
    public static func encode(rowsJSON: [UInt8], shapeJSON: [UInt8], count: Int, jobID: String?, traceID: String?,
                              origin: String? = nil, receivedAt: Int64? = nil, dataset: DatasetReference? = nil) -> [(String, [UInt8])] {
        var fields = header(version: rowsVersion, count: count, jobID: jobID, traceID: traceID, origin: origin, receivedAt: receivedAt,
                            dataset: dataset)
        fields.append(("shape", shapeJSON))
        fields.append(("rows", rowsJSON))
        return fields
    }

    private static func header(version: String, count: Int, jobID: String?, traceID: String?, origin: String?,
                               receivedAt: Int64?, dataset: DatasetReference?) -> [(String, [UInt8])] {
        var fields: [(String, [UInt8])] = [("v", Array(version.utf8)), ("n", Array(String(count).utf8))]
        if let jobID { fields.append(("job", Array(jobID.utf8))) }
        if let traceID { fields.append(("trace", Array(traceID.utf8))) }
        if let origin { fields.append(("origin", Array(origin.utf8))) }
        if let receivedAt { fields.append(("received", Array(String(receivedAt).utf8))) }
        if let dataset { fields.append(("dataset", Array(dataset.description.utf8))) }
        return fields
    }

    /// The entry fields of `chunk` (its id is the entry's, not a field).
    public static func encode(_ chunk: Chunk) -> [(String, [UInt8])] {
        encode(events: chunk.events, jobID: chunk.jobID, traceID: chunk.traceID, origin: chunk.origin, receivedAt: chunk.receivedAt,
               dataset: chunk.dataset)
    }

    /// The chunk held by the entry `id` with `fields`.
    /// - Throws: ``DecodingError`` for a missing field, an unknown version, events that are
    ///   not a JSON array (rows that do not fit their shape), or a count that does not match.
    public static func decode(id: String, fields: [(String, [UInt8])]) throws(DecodingError) -> Chunk {
        var version: String?, count: Int?, job: String?, trace: String?, origin: String?, received: Int64?, dataset: DatasetReference?
        var body: [UInt8]?, shape: [UInt8]?, rows: [UInt8]?
        for (name, value) in fields {
            switch name {
            case "v": version = String(decoding: value, as: UTF8.self)
            case "n": count = Int(String(decoding: value, as: UTF8.self))
            case "job": job = String(decoding: value, as: UTF8.self)
            case "trace": trace = String(decoding: value, as: UTF8.self)
            case "origin": origin = String(decoding: value, as: UTF8.self)
            case "received": received = Int64(String(decoding: value, as: UTF8.self))
            case "dataset":
                guard let reference = DatasetReference(String(decoding: value, as: UTF8.self)) else {
                    throw DecodingError(code: "chunk_bad_dataset", message: "dataset is not NAME@VERSION")
                }
                dataset = reference
            case "events": body = value
            case "shape": shape = value
            case "rows": rows = value
            default: continue
            }
        }
        guard let version else { throw DecodingError(code: "chunk_missing_field", message: "no 'v' field") }
        let events: [Event]
        switch version {
        case Self.version:
            guard let body else { throw DecodingError(code: "chunk_missing_field", message: "no 'events' field") }
            events = try array(body, name: "events").map(Event.init)
        case Self.rowsVersion:
            guard let shape else { throw DecodingError(code: "chunk_missing_field", message: "no 'shape' field") }
            guard let rows else { throw DecodingError(code: "chunk_missing_field", message: "no 'rows' field") }
            events = try RowShape(json: shape).events(array(rows, name: "rows"))
        default:
            throw DecodingError(code: "chunk_bad_version", message: "format version \(version) is not supported")
        }
        if let count, count != events.count {
            throw DecodingError(code: "chunk_count_mismatch", message: "n is \(count) but \(events.count) events are present")
        }
        return Chunk(id: id, jobID: job, traceID: trace, events: events, origin: origin, receivedAt: received, dataset: dataset)
    }

    /// The elements of the JSON array `bytes` (field `name`).
    private static func array(_ bytes: [UInt8], name: String) throws(DecodingError) -> [JSONValue] {
        let parsed: JSONValue
        do {
            parsed = try JSONParser().parse(bytes)
        } catch {
            throw DecodingError(code: "chunk_bad_events", message: "\(name) are not JSON (\(error.code.rawValue) at byte \(error.offset))")
        }
        guard case .array(let values) = parsed else {
            throw DecodingError(code: "chunk_bad_events", message: "\(name) are not a JSON array")
        }
        return values
    }
}
