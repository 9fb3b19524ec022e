import Sluice
import SluiceUploads

/// The properties every fuzz target checks. A violated one stops the process (`fatalError`),
/// which libFuzzer reports with the input that did it.
public enum Fuzzing {
    /// Small limits, so that short inputs reach the record, quarantine and depth limits.
    public static let limits = UploadLimits(maxRecordBytes: 256, maxQuarantinedBytes: 32, maxDepth: 8)

    /// An upload decoder, given any bytes whatever:
    /// - answers the same records, or the same error at the same offset, whether the body comes
    ///   whole or in pieces (the input's first byte picks their size): what TCP does to a body
    ///   must not change what is loaded;
    /// - numbers records from 1, in order; every event is a JSON object; an error's offset lies
    ///   inside the body.
    public static func checkUpload<D: UploadDecoder>(_ make: () -> D, _ data: UnsafeRawBufferPointer) {
        let body = Array(data)
        let piece = Int(body.first ?? 0) % 13 + 1
        let whole = decode(ByteOrderMarkSkipping(make()), body, piece: max(1, body.count))
        let split = decode(ByteOrderMarkSkipping(make()), body, piece: piece)
        guard whole == split else {
            fatalError("pieces of \(piece) bytes decode differently:\n whole: \(describe(whole))\n split: \(describe(split))")
        }
        switch whole {
        case .failure(let error):
            guard error.offset >= 0, error.offset <= body.count else { fatalError("offset \(error.offset) outside a body of \(body.count) bytes") }
        case .success(let records):
            var last = 0
            for record in records {
                switch record {
                case .event(let value, let line):
                    guard case .object = value else { fatalError("an event that is not an object at \(line)") }
                    guard line >= max(1, last) else { fatalError("line \(line) after \(last)") }
                    last = line
                case .row(_, _, let line):
                    guard case .object? = try? record.eventValue() else { fatalError("a row whose event is not a JSON object at \(line)") }
                    guard line >= max(1, last) else { fatalError("line \(line) after \(last)") }
                    last = line
                case .malformed(let reason, let line, let raw):
                    guard line >= max(1, last) else { fatalError("line \(line) after \(last)") }
                    guard !reason.isEmpty else { fatalError("a quarantined record without a reason") }
                    // The kept text is at most the limit's bytes (a cut character becomes U+FFFD).
                    guard raw.utf8.count <= limits.maxQuarantinedBytes + 3 else { fatalError("\(raw.utf8.count) bytes kept of a malformed record") }
                    last = line
                }
            }
        }
    }

    /// A mapping with nested paths, a path inside another (`d` holds `a` and `b`) and JSON
    /// columns, for short CSV headers.
    public static let csvMapping = CSVColumnMapping(paths: ["a": "m.a", "b": "m.b", "c": "n.x.y", "d": "m", "e": "a"], jsonColumns: ["j", "a"])

    /// The CSV decoder with a mapping, given any bytes: each record's event, written straight
    /// from the cells as a row, equals the one the mapping builds from the flat record, and so
    /// do the events of the chunk of rows that ingest appends; malformed records and errors are
    /// those of the flat decoding.
    public static func checkCSVMapping(_ data: UnsafeRawBufferPointer) {
        let body = Array(data)
        let flat = decode(CSVDecoder(limits: limits), body, piece: max(1, body.count))
        let mapped = decode(CSVDecoder(limits: limits, mapping: csvMapping), body, piece: Int(body.first ?? 0) % 7 + 1)
        switch (flat, mapped) {
        case (.failure(let a), .failure(let b)):
            guard a == b else { fatalError("errors differ: \(a) / \(b)") }
        case (.success(let a), .success(let b)):
            guard a.count == b.count else { fatalError("\(a.count) records flat, \(b.count) mapped") }
            var rows: [UInt8] = [UInt8(ascii: "[")], shape: [UInt8]?, expected: [Event] = []
            for (x, y) in zip(a, b) {
                switch (x, y) {
                case (.event(let value, let line), .event(let event, let other)):
                    guard csvMapping.map(value) == event, line == other else { fatalError("mapped event differs at \(line)") }
                case (.event(let value, let line), .row(let row, let rowShape, let other)):
                    guard let event = try? y.eventValue() else { fatalError("row does not build its event at \(line)") }
                    guard csvMapping.map(value) == event, line == other else {
                        fatalError("row's event differs at \(line): \(String(decoding: row, as: UTF8.self)) / \(csvMapping.map(value))")
                    }
                    if !expected.isEmpty { rows.append(UInt8(ascii: ",")) }
                    rows += row
                    shape = rowShape
                    expected.append(Event(event))
                default:
                    guard x == y else { fatalError("records differ: \(x) / \(y)") }
                }
            }
            if let shape {
                rows.append(UInt8(ascii: "]"))
                let fields = ChunkCodec.encode(rowsJSON: rows, shapeJSON: shape, count: expected.count, jobID: "j", traceID: nil)
                guard let chunk = try? ChunkCodec.decode(id: "1-0", fields: fields), chunk.events == expected else {
                    fatalError("the chunk of rows does not decode to the records' events")
                }
            }
        default:
            fatalError("one decoding failed: \(describe(flat)) / \(describe(mapped))")
        }
    }

    static func decode<D: UploadDecoder>(_ decoder: D, _ body: [UInt8], piece: Int) -> Result<[UploadRecord], UploadError> {
        var decoder = decoder
        var records: [UploadRecord] = []
        var start = 0
        do throws(UploadError) {
            while start < body.count {
                let end = min(start + piece, body.count)
                try decoder.feed(Array(body[start..<end]), into: &records)
                start = end
            }
            try decoder.finish(into: &records)
            return .success(records)
        } catch {
            return .failure(error)
        }
    }

    static func describe(_ outcome: Result<[UploadRecord], UploadError>) -> String {
        switch outcome {
        case .success(let records): "\(records.count) records: \(records)"
        case .failure(let error): "\(error)"
        }
    }

    /// The JSON parser, given any bytes: ``JSONParser/isValid(_:)`` accepts what it parses and
    /// nothing else; an error's offset lies inside the input; a value it accepts serialises to
    /// bytes it parses back to the same value, and those bytes are stable.
    public static func checkJSON(_ data: UnsafeRawBufferPointer) {
        let parser = JSONParser(maxDepth: 32)
        let valid = parser.isValid(data)
        do {
            let value = try parser.parse(data)
            guard valid else { fatalError("isValid refuses what parse accepts: \(value)") }
            var once: [UInt8] = []
            value.write(into: &once)
            let again = once.withUnsafeBytes { try? parser.parse($0) }
            guard let again, again == value else { fatalError("\(value) does not survive serialisation: \(String(decoding: once, as: UTF8.self))") }
            var twice: [UInt8] = []
            again.write(into: &twice)
            guard twice == once else { fatalError("serialisation is not stable") }
        } catch {
            guard !valid else { fatalError("isValid accepts what parse refuses (\(error))") }
            guard error.offset >= 0, error.offset <= data.count else { fatalError("offset \(error.offset) outside \(data.count) bytes") }
        }
    }

    /// The stream entry decoder, given any fields (the input is split at NUL bytes into name,
    /// value, name, value …): a chunk it accepts encodes to fields it decodes to the same chunk.
    public static func checkChunk(_ data: UnsafeRawBufferPointer) {
        let parts = Array(data).split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
        var fields: [(String, [UInt8])] = []
        var index = 0
        while index + 1 < parts.count {
            fields.append((String(decoding: parts[index], as: UTF8.self), parts[index + 1]))
            index += 2
        }
        guard let chunk = try? ChunkCodec.decode(id: "1-0", fields: fields) else { return }
        let encoded = ChunkCodec.encode(chunk)
        guard let again = try? ChunkCodec.decode(id: "1-0", fields: encoded) else { fatalError("an accepted chunk does not decode once encoded") }
        guard again.events == chunk.events, again.jobID == chunk.jobID, again.traceID == chunk.traceID,
              again.origin == chunk.origin, again.receivedAt == chunk.receivedAt
        else { fatalError("a chunk changes when encoded and decoded again") }
    }
}
