#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@testable import Sluice
import SluiceFunctions
@testable import SluicePrivacy
@testable import SluiceUploads
import Testing

/// Every parser and scanner costs at most a few times as much on an input built to be slow
/// (100,000 keys in one object, 130,000 addresses in one string, overlapping or very many
/// nested CSV columns, 100,000 repeated XML children) as on normal input of the same size.
/// Measured as a ratio in the same test, never as a time: each side's least CPU time of this
/// thread over two interleaved runs, so that other processes on the machine cancel out. A
/// quadratic step makes the ratio grow with the input (hundreds here); linear code keeps it
/// near 1.
@Suite("Linear cost of parsers and scanners", .serialized)
struct LinearCostTests {
    /// The most an adversarial input may cost against normal input of the same bytes.
    static let limit = 6.0

    // MARK: JSON

    @Test func jsonObjectWith100000Keys() throws {
        let keys = 100_000
        let big = Self.bytes(of: Self.wideObject(keys: keys) { .int(Int64($0)) })
        let normal = Self.bytes(of: Self.normalEvents(bytes: big.count))
        var parsed = JSONValue.null
        try Self.expectLinear("JSON object of \(keys) keys", big: big.count, normal: normal.count,
            adversarial: { parsed = try JSONParser().parse(big); _ = parsed.serializedBytes },
            baseline: { _ = try JSONParser().parse(normal).serializedBytes })
        #expect(parsed.objectValue?.count == keys)
        #expect(parsed["k99999"] == .int(99_999))
        #expect(parsed.serializedBytes == big)
    }

    @Test func jsonObjectWith100000DuplicateKeys() throws {
        // Every key twice: the last value wins, the first position stays, checked by hash.
        let keys = 50_000
        var text = "{"
        for round in 0..<2 { for i in 0..<keys { text += "\"k\(i)\":\(round * keys + i)," } }
        text.removeLast()
        text += "}"
        let big = Array(text.utf8)
        let normal = Self.bytes(of: Self.normalEvents(bytes: big.count))
        var parsed = JSONValue.null
        try Self.expectLinear("JSON object of \(keys) keys each twice", big: big.count, normal: normal.count,
            adversarial: { parsed = try JSONParser().parse(big) },
            baseline: { _ = try JSONParser().parse(normal) })
        #expect(parsed.objectValue?.count == keys)
        #expect(parsed.objectValue?.keys.first == "k0" && parsed.objectValue?.keys.last == "k\(keys - 1)")
        #expect(parsed["k0"] == .int(Int64(keys)))
    }

    // MARK: PII

    @Test func oneStringWith130000Addresses() {
        let addresses = 130_000
        var text = ""
        for i in 0..<addresses { text += "u\(i)@ex.io " }
        let normalText = Self.prose(bytes: text.utf8.count)
        let masker = PIIMasker(operators: [.email: .replace, .phone: .mask, .card: .mask, .iban: .mask, .ipv4: .replace, .ipv6: .replace, .ssn: .redact],
                               key: [])
        var masked = ""
        Self.expectLinear("one string of \(addresses) addresses", big: text.utf8.count, normal: normalText.utf8.count,
            adversarial: { masked = masker.mask(text) },
            baseline: { _ = masker.mask(normalText) })
        #expect(masked == String(repeating: "<EMAIL> ", count: addresses))
        #expect(masker.mask(normalText).components(separatedBy: "<EMAIL>").count - 1 == normalText.components(separatedBy: "@").count - 1)
    }

    @Test func objectWith100000MembersHoldingAddresses() {
        // Every member changes: the masked copy is written member by member.
        let keys = 100_000
        let big = Self.wideObject(keys: keys) { .string("u\($0)@example.com") }
        let size = Self.bytes(of: big).count
        let normal = Self.normalEvents(bytes: size)
        let masker = PIIMasker(operators: [.email: .replace], key: [])
        var masked = JSONValue.null
        Self.expectLinear("object of \(keys) members with an address each", big: size, normal: Self.bytes(of: normal).count,
            adversarial: { masked = masker.mask(big) },
            baseline: { _ = masker.mask(normal) })
        #expect(masked["k12345"] == "<EMAIL>")
        #expect(masked.objectValue?.count == keys)
    }

    // MARK: CSV

    @Test func csvWithOverlappingColumnPaths() throws {
        // `user`, `user_id` (→ user.id), `user.id`, `user.name` and `user.name.first` nest
        // under one another: no row layout, each record is mapped as a tree.
        let rows = 10_000
        var text = "user,user_id,user.id,user.name,user.name.first,event_id,event_type\n"
        for i in 0..<rows { text += "u\(i),\(i),,n\(i),f\(i),e\(i),click\n" }
        let big = Array(text.utf8)
        let normal = Self.plainCSV(bytes: big.count)
        var events: [JSONValue] = []
        try Self.expectLinear("CSV of \(rows) rows with overlapping paths", big: big.count, normal: normal.count,
            adversarial: { events = try Self.csvEvents(big) },
            baseline: { _ = try Self.csvEvents(normal) })
        #expect(events.count == rows)
        #expect(events[7] == ["user": ["name": ["first": "f7"], "id": "7"], "metadata": ["event_id": "e7"], "payload": ["event_type": "click"]])
    }

    @Test func csvHeaderWithManyColumnsUnderOnePath() throws {
        // 10,000 columns nest under `props`: as a row layout, and (with `props` itself a column,
        // so the paths overlap) as a tree per record.
        let columns = 10_000
        for overlap in [false, true] {
            var header = (0..<columns).map { "props.c\($0)" }
            if overlap { header.append("props") }
            var text = header.joined(separator: ",") + "\n"
            for row in 0..<3 { text += (0..<columns).map { "\(row * columns + $0)" }.joined(separator: ",") + (overlap ? ",\n" : "\n") }
            let big = Array(text.utf8)
            let normal = Self.plainCSV(bytes: big.count)
            var events: [JSONValue] = []
            try Self.expectLinear("CSV header of \(header.count) columns under one path\(overlap ? ", overlapping" : "")",
                big: big.count, normal: normal.count,
                adversarial: { events = try Self.csvEvents(big) },
                baseline: { _ = try Self.csvEvents(normal) })
            #expect(events.count == 3)
            #expect(events.last?.value(atPath: "props.c\(columns - 1)") == .string("\(3 * columns - 1)"))
            #expect(events.first?["props"]?.objectValue?.count == columns)
        }
    }

    // MARK: XML

    @Test func xmlEventWith100000RepeatedChildren() throws {
        let children = 100_000
        let big = Array(("<events><event><id>e1</id>" + String(repeating: "<i>1</i>", count: children) + "</event></events>").utf8)
        let normal = Self.normalXML(bytes: big.count)
        let limits = UploadLimits(maxRecordBytes: 16 << 20)
        var records: [UploadRecord] = []
        try Self.expectLinear("XML event of \(children) repeated children", big: big.count, normal: normal.count,
            adversarial: { records = try decode(XMLDecoder(limits: limits), big, piece: big.count) },
            baseline: { _ = try decode(XMLDecoder(limits: limits), normal, piece: normal.count) })
        #expect(records.count == 1)
        #expect(try records.first?.eventValue()?["i"]?.arrayValue?.count == children)
    }

    @Test func xmlEventWith20000DistinctChildren() throws {
        let children = 20_000
        var text = "<events><event>"
        for i in 0..<children { text += "<k\(i)>1</k\(i)>" }
        text += "</event></events>"
        let big = Array(text.utf8)
        let normal = Self.normalXML(bytes: big.count)
        let limits = UploadLimits(maxRecordBytes: 16 << 20)
        var records: [UploadRecord] = []
        try Self.expectLinear("XML event of \(children) distinct children", big: big.count, normal: normal.count,
            adversarial: { records = try decode(XMLDecoder(limits: limits), big, piece: big.count) },
            baseline: { _ = try decode(XMLDecoder(limits: limits), normal, piece: normal.count) })
        #expect(try records.first?.eventValue()?.objectValue?.count == children)
    }

    @Test func xmlMarkupArrivingInSmallPieces() throws {
        // A long comment and a long attribute value, each in 2,000 pieces: the search for the
        // markup's end goes on where the last piece left it, instead of starting again.
        let long = 256 * 1024
        for (name, markup) in [("comment", "<!--" + String(repeating: "x", count: long) + "-->"),
                               ("attribute", "<note text=\"" + String(repeating: "x", count: long) + "\">n</note>")] {
            let big = Array(("<events><event><id>e1</id>" + markup + "</event></events>").utf8)
            let normal = Self.normalXML(bytes: big.count)
            var records: [UploadRecord] = []
            try Self.expectLinear("XML \(name) of \(long) bytes in pieces of 128", big: big.count, normal: normal.count,
                adversarial: { records = try decode(XMLDecoder(), big, piece: 128) },
                baseline: { _ = try decode(XMLDecoder(), normal, piece: 128) })
            #expect(records.count == 1)
            #expect(try records.first?.eventValue()?["id"] == "e1")
        }
    }

    // MARK: The path of one event

    @Test func eventWith100000KeysThroughThePipeline() throws {
        // What one process does to an event on its way: ingest parses it, validate masks and
        // checks it, transform flattens it, and every stage writes and reads its chunk.
        let keys = 100_000
        var properties = JSONObject()
        for i in 0..<keys { properties["p\(i)"] = i % 1000 == 0 ? .string("mail p\(i)@example.com") : .int(Int64(i)) }
        let big = Self.bytes(of: Self.event(id: "e-big", properties: properties))
        let normal = Self.normalEventLines(bytes: big.count)
        let middleware = try PIIMaskMiddleware(
            manifest: Manifest(name: "validate", handler: "validate", triggers: [.stream("validate")], middleware: ["pii-mask"], file: "validate.yaml"),
            pseudonymKey: "a pseudonym key of at least 16 bytes")
        let transform = try TransformProgram(config: ["rules": .array(Self.transformRules)], file: "transform.yaml")
        let validator = EventShapeValidator()
        let now = Self.now + 1000
        func run(_ lines: [UInt8]) throws -> [JSONValue] {
            var out: [JSONValue] = []
            for record in try decode(NDJSONDecoder(limits: UploadLimits(maxRecordBytes: 16 << 20)), lines, piece: lines.count) {
                guard case .event(let value, _) = record else { continue }
                let validated = try ChunkCodec.decode(id: "1-0", fields: ChunkCodec.encode(events: [Event(value)], jobID: nil, traceID: nil))
                let masked = middleware.mask(validated.events[0].value)
                guard case .valid = validator.check(masked, nowMilliseconds: now) else { continue }
                let transformed = try ChunkCodec.decode(id: "2-0", fields: ChunkCodec.encode(events: [Event(masked)], jobID: nil, traceID: nil))
                let row = try transform.apply(to: transformed.events[0].value)
                let loaded = try ChunkCodec.decode(id: "3-0", fields: ChunkCodec.encode(events: [Event(row)], jobID: nil, traceID: nil))
                out.append(loaded.events[0].value)
            }
            return out
        }
        var rows: [JSONValue] = []
        let lines = big + [UInt8(ascii: "\n")]
        try Self.expectLinear("event of \(keys) keys through parse, mask, validate, transform, chunks", big: lines.count, normal: normal.count,
            adversarial: { rows = try run(lines) },
            baseline: { _ = try run(normal) })
        #expect(rows.count == 1)
        #expect(rows.first?["event_id"] == "e-big")
        #expect(rows.first?["user_id"]?.stringValue.map(PIIMasker.isPseudonymousUserID) == true)
        #expect(rows.first?["properties"]?.objectValue?.count == keys)
        #expect(rows.first?["properties"]?["p1000"]?.stringValue?.hasPrefix("mail <EMAIL:") == true)
        #expect(try run(normal).count == normal.split(separator: UInt8(ascii: "\n")).count)
    }

    // MARK: Measuring

    /// CPU time of the calling thread, in nanoseconds.
    static func threadCPU() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Runs both sides `runs` times, interleaved, and expects the least cost of `adversarial`
    /// to be at most ``limit`` times the least cost of `baseline`; the message gives both.
    static func expectLinear(_ name: String, big: Int, normal: Int, runs: Int = 2,
                             adversarial: () throws -> Void, baseline: () throws -> Void,
                             sourceLocation: SourceLocation = #_sourceLocation) rethrows {
        var bigCost = UInt64.max, normalCost = UInt64.max
        for _ in 0..<runs {
            var start = threadCPU()
            try baseline()
            normalCost = min(normalCost, threadCPU() - start)
            start = threadCPU()
            try adversarial()
            bigCost = min(bigCost, threadCPU() - start)
        }
        // Per byte, so that sizes that differ a little do not count.
        let ratio = (Double(bigCost) / Double(big)) / (Double(max(normalCost, 1)) / Double(normal))
        let report = "\(name): \(big) bytes cost \(bigCost / 1_000_000) ms of CPU, \(normal) bytes of normal input "
            + "\(normalCost / 1_000_000) ms: \((ratio * 100).rounded() / 100)× per byte (limit \(limit)×)"
        print(report)
        #expect(ratio <= limit, "\(report)", sourceLocation: sourceLocation)
    }

    // MARK: Inputs

    static let now: Int64 = 1_767_225_600_000  // 2026-01-01T00:00:00Z
    static let transformRules: [JSONValue] = [
        ["rename": ["from": "metadata.event_id", "to": "event_id"]], ["rename": ["from": "metadata.timestamp", "to": "event_time"]],
        ["rename": ["from": "user.id", "to": "user_id"]], ["rename": ["from": "context.device_type", "to": "device_type"]],
        ["rename": ["from": "context.location.country", "to": "country"]], ["lowercase": ["field": "payload.event_type"]],
        ["rename": ["from": "payload.event_type", "to": "event_type"]], ["rename": ["from": "payload.properties", "to": "properties"]],
        ["drop": ["field": "metadata"]], ["drop": ["field": "user"]], ["drop": ["field": "context"]], ["drop": ["field": "payload"]],
    ]

    static func bytes(of value: JSONValue) -> [UInt8] { value.serializedBytes }

    /// `{"k0": value(0), "k1": value(1), …}`.
    static func wideObject(keys: Int, _ value: (Int) -> JSONValue) -> JSONValue {
        var object = JSONObject()
        for i in 0..<keys { object["k\(i)"] = value(i) }
        return .object(object)
    }

    /// An event of the built-in shape.
    static func event(id: String, properties: JSONObject) -> JSONValue {
        ["metadata": ["event_id": .string(id), "timestamp": "2026-01-01T00:00:00Z", "version": "1.0", "source": "web"],
         "user": ["id": "alice@example.com", "session_id": "s-1"],
         "context": ["device_type": "mobile", "location": ["country": "DE", "region": "BE"]],
         "payload": ["event_type": "Click", "properties": .object(properties)]]
    }

    /// A JSON array of normal events, about `bytes` long.
    static func normalEvents(bytes: Int) -> JSONValue {
        var events: [JSONValue] = []
        var size = 2
        while size < bytes {
            let event = event(id: "e-\(events.count)", properties: ["page": "/home", "value": .int(Int64(events.count)), "ref": "ads"])
            size += event.serializedBytes.count + 1
            events.append(event)
        }
        return .array(events)
    }

    /// NDJSON of normal events, about `bytes` long.
    static func normalEventLines(bytes: Int) -> [UInt8] {
        var out: [UInt8] = []
        for event in normalEvents(bytes: bytes).arrayValue ?? [] {
            out += event.serializedBytes
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Sentences with a number and now and then an address, about `bytes` long.
    static func prose(bytes: Int) -> String {
        var text = ""
        var i = 0
        while text.utf8.count < bytes {
            text += i % 20 == 0 ? "Write to support\(i)@example.com about order \(i). " : "The quick brown fox jumps over \(i) lazy dogs. "
            i += 1
        }
        return text
    }

    /// A CSV of plain columns (each to its own path), about `bytes` long.
    static func plainCSV(bytes: Int) -> [UInt8] {
        var text = "event_id,event_type,user_id,country,device_type,a,b\n"
        var i = 0
        while text.utf8.count < bytes {
            text += "e\(i),click,\(i),DE,mobile,x\(i),y\n"
            i += 1
        }
        return Array(text.utf8)
    }

    /// The events of a CSV decoded with the built-in mapping (rows built into their shape).
    static func csvEvents(_ body: [UInt8]) throws -> [JSONValue] {
        try decode(CSVDecoder(mapping: CSVColumnMapping()), body, piece: body.count).compactMap { try $0.eventValue() }
    }

    /// XML of normal events, about `bytes` long.
    static func normalXML(bytes: Int) -> [UInt8] {
        var text = "<events>"
        var i = 0
        while text.utf8.count < bytes {
            text += "<event><id>e\(i)</id><type>click</type><v>\(i)</v></event>"
            i += 1
        }
        return Array((text + "</events>").utf8)
    }
}
