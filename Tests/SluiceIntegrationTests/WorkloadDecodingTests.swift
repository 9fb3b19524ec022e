import Foundation
import Sluice
import SluiceUploads
import SluiceFunctions
import Testing

/// The upload decoders on the shared workload generator's output in every format: every event
/// it wrote comes back, with the same ids, whatever the format.
@Suite("Decoding gen_events.py workloads")
struct WorkloadDecodingTests {
    static let generator: String = {
        let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        return ProcessInfo.processInfo.environment["SLUICE_GEN_EVENTS"] ?? "\(root)/../shared/bench/gen_events.py"
    }()

    func generate(_ format: String, count: Int) throws -> (body: [UInt8], manifest: JSONValue) {
        let directory = NSTemporaryDirectory() + "sluice-gen-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.generator, "--count", "\(count)", "--seed", "11", "--format", format,
                             "--now", "2026-11-23T00:00:00Z", "--out", "\(directory)/body", "--manifest", "\(directory)/manifest.json"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let body = FileManager.default.contents(atPath: "\(directory)/body"),
              let manifest = FileManager.default.contents(atPath: "\(directory)/manifest.json")
        else { throw IntegrationSetupError("gen_events.py failed (looked for it at \(Self.generator))") }
        return (Array(body), try JSONParser().parse(Array(manifest)))
    }

    func decodeInPieces<D: UploadDecoder>(_ decoder: D, _ body: [UInt8]) throws -> [UploadRecord] {
        var decoder = decoder
        return try decodeInPieces(into: &decoder, body)
    }

    func decodeInPieces<D: UploadDecoder>(into decoder: inout D, _ body: [UInt8]) throws -> [UploadRecord] {
        var records: [UploadRecord] = []
        var start = 0
        while start < body.count {
            let end = min(start + 65_536, body.count)
            let piece = Array(body[start..<end])
            try piece.withUnsafeBytes { try decoder.feed($0, into: &records) }
            start = end
        }
        try decoder.finish(into: &records)
        return records
    }

    func ids(_ records: [UploadRecord], path: String) -> [String] {
        records.compactMap { if case .event(let value, _) = $0 { value.value(atPath: path)?.stringValue } else { nil } }
    }

    @Test func everyFormatYieldsEveryEvent() throws {
        let count = 2_000
        let ndjson = try generate("ndjson", count: count)
        #expect(ndjson.manifest["count"] == .int(Int64(count)))
        let fromNDJSON = try decodeInPieces(NDJSONDecoder(), ndjson.body)
        let fromJSON = try decodeInPieces(JSONArrayDecoder(), try generate("json", count: count).body)
        let fromXML = try decodeInPieces(XMLDecoder(), try generate("xml", count: count).body)
        var csv = CSVDecoder()
        let fromCSV = try decodeInPieces(into: &csv, try generate("csv", count: count).body)
        for records in [fromNDJSON, fromJSON, fromXML, fromCSV] {
            #expect(records.count == count)
            #expect(records.allSatisfy { if case .event = $0 { true } else { false } })
        }
        let reference = ids(fromNDJSON, path: "metadata.event_id")
        #expect(reference.count > count * 9 / 10)  // some events are generated without an id on purpose
        #expect(ids(fromJSON, path: "metadata.event_id") == reference)
        #expect(ids(fromXML, path: "metadata.event_id") == reference)
        #expect(ids(fromCSV, path: "event_id").filter { !$0.isEmpty } == reference)
        #expect(csv.schema.map(\.name) == ["event_id", "timestamp", "version", "source", "user_id", "session_id", "device_type",
                                           "os_version", "app_version", "country", "region", "event_type", "properties"])
        // Timestamps are inferred as such unless a planted broken one ("not-a-time") is among them.
        let broken = fromCSV.contains { if case .event(let v, _) = $0 { v["timestamp"] == "not-a-time" } else { false } }
        #expect(csv.schema.first { $0.name == "timestamp" }?.type == (broken ? .string : .timestamp))
        #expect(csv.schema.first { $0.name == "device_type" }?.type == .string)
        #expect(csv.schema.first { $0.name == "properties" }?.type == .string)
    }

    /// The validator agrees with the generator's manifest about every event it planted.
    @Test func validatorMatchesTheManifest() throws {
        let generated = try generate("ndjson", count: 5_000)
        let records = try decodeInPieces(NDJSONDecoder(), generated.body)
        let now = try #require(generated.manifest["now"]?.stringValue.flatMap(Timestamp.milliseconds))
        let validator = EventShapeValidator()
        var malformed = 0, stale = 0, valid = 0
        for case .event(let value, _) in records {
            switch validator.check(value, nowMilliseconds: now) {
            case .malformed: malformed += 1
            case .stale: stale += 1
            case .valid: valid += 1
            }
        }
        let expected = try #require(generated.manifest["expected"])
        #expect(malformed == Int(expected["quarantined"]?.intValue ?? -1))
        #expect(stale == Int(expected["stale"]?.intValue ?? -1))
        let passing = ["loaded", "duplicate", "no_consent"].compactMap { expected[$0]?.intValue }.reduce(0, +)
        #expect(valid == Int(passing))
        #expect(malformed > 0 && stale > 0)
    }
}
