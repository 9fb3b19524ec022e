/// Turns chunks into stream entry fields and back.
///
/// An entry holds `v` (format version, `1`), `n` (event count), `events` (a compact JSON array),
/// and, when known, `job`, `trace`, `origin` (the entry that first carried the chunk) and
/// `received` (when the events were accepted, Unix milliseconds). Field values are bytes; the field order is fixed.
public enum ChunkCodec {
    /// The format version written by this build.
    public static let version = "1"

    /// A stream entry that is not a chunk this build can read.
    public struct DecodingError: Error, Sendable, Equatable, CustomStringConvertible {
        /// `chunk_missing_field`, `chunk_bad_version`, `chunk_bad_events`, `chunk_count_mismatch`.
        public var code: String
        /// Details, never the content.
        public var message: String
        public var description: String { "\(code): \(message)" }
    }

    /// The entry fields for `events` of job `jobID` with trace `traceID`.
    public static func encode(events: some Collection<Event>, jobID: String?, traceID: String?, origin: String? = nil,
                              receivedAt: Int64? = nil) -> [(String, [UInt8])] {
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
        return encode(eventsJSON: body, count: events.count, jobID: jobID, traceID: traceID, origin: origin, receivedAt: receivedAt)
    }

    /// The entry fields for `count` events already written as a JSON array (`eventsJSON`).
    public static func encode(eventsJSON: [UInt8], count: Int, jobID: String?, traceID: String?, origin: String? = nil,
                              receivedAt: Int64? = nil) -> [(String, [UInt8])] {
        var fields: [(String, [UInt8])] = [("v", Array(version.utf8)), ("n", Array(String(count).utf8))]
        if let jobID { fields.append(("job", Array(jobID.utf8))) }
        if let traceID { fields.append(("trace", Array(traceID.utf8))) }
        if let origin { fields.append(("origin", Array(origin.utf8))) }
        if let receivedAt { fields.append(("received", Array(String(receivedAt).utf8))) }
        fields.append(("events", eventsJSON))
        return fields
    }

    /// The entry fields of `chunk` (its id is the entry's, not a field).
    public static func encode(_ chunk: Chunk) -> [(String, [UInt8])] {
        encode(events: chunk.events, jobID: chunk.jobID, traceID: chunk.traceID, origin: chunk.origin, receivedAt: chunk.receivedAt)
    }

    /// The chunk held by the entry `id` with `fields`.
    /// - Throws: ``DecodingError`` for a missing field, an unknown version, events that are
    ///   not a JSON array, or a count that does not match.
    public static func decode(id: String, fields: [(String, [UInt8])]) throws(DecodingError) -> Chunk {
        var version: String?, count: Int?, job: String?, trace: String?, origin: String?, received: Int64?, body: [UInt8]?
        for (name, value) in fields {
            switch name {
            case "v": version = String(decoding: value, as: UTF8.self)
            case "n": count = Int(String(decoding: value, as: UTF8.self))
            case "job": job = String(decoding: value, as: UTF8.self)
            case "trace": trace = String(decoding: value, as: UTF8.self)
            case "origin": origin = String(decoding: value, as: UTF8.self)
            case "received": received = Int64(String(decoding: value, as: UTF8.self))
            case "events": body = value
            default: continue
            }
        }
        guard let version else { throw DecodingError(code: "chunk_missing_field", message: "no 'v' field") }
        guard version == Self.version else {
            throw DecodingError(code: "chunk_bad_version", message: "format version \(version) is not supported")
        }
        guard let body else { throw DecodingError(code: "chunk_missing_field", message: "no 'events' field") }
        let parsed: JSONValue
        do {
            parsed = try JSONParser().parse(body)
        } catch {
            throw DecodingError(code: "chunk_bad_events", message: "events are not JSON (\(error.code.rawValue) at byte \(error.offset))")
        }
        guard case .array(let values) = parsed else {
            throw DecodingError(code: "chunk_bad_events", message: "events are not a JSON array")
        }
        if let count, count != values.count {
            throw DecodingError(code: "chunk_count_mismatch", message: "n is \(count) but \(values.count) events are present")
        }
        return Chunk(id: id, jobID: job, traceID: trace, events: values.map(Event.init), origin: origin, receivedAt: received)
    }
}
