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

/// `POST /api/v1/process/transform`: the process chain run on posted events, writing nothing.
extension IngestFunction {
    /// Runs the process chain (validate → enrich → transform by default) on the posted JSON
    /// array (or NDJSON) of events and answers each event's fate; writes nothing.
    func processTransform(_ request: Request) async throws -> JSONResponse {
        guard !processChain.isEmpty else {
            throw Problem(.serviceUnavailable, code: "not_configured", detail: "no stage manifests were found for the dry run")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: 8 << 20)
        } catch {
            throw Problem(.contentTooLarge, code: "body_too_large", detail: "the body is larger than \(8 << 20) bytes")
        }
        var records: [UploadRecord] = []
        do {
            let bytes = Array(body.readableBytesView)
            let first = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
            if first == UInt8(ascii: "[") {
                var decoder = JSONArrayDecoder(limits: limits)
                records = try decoder.decodeAll(bytes)
            } else {
                var decoder = NDJSONDecoder(limits: limits)
                records = try decoder.decodeAll(bytes)
            }
        } catch {
            throw Problem(.badRequest, code: error.code.rawValue, detail: "the body cannot be parsed: \(error.message)",
                          extra: ["offset": .int(Int64(error.offset))])
        }
        guard records.count <= 10_000 else {
            throw Problem(.contentTooLarge, code: "too_many_events", detail: "at most 10000 events per dry run")
        }
        var results: [JSONValue] = Array(repeating: .null, count: records.count)
        var live: [(index: Int, event: Event)] = []
        for (index, record) in records.enumerated() {
            switch record {
            case .event, .row:
                if let value = try? record.eventValue() {
                    live.append((index, Event(value)))
                } else {
                    results[index] = ["index": .int(Int64(index)), "outcome": "quarantine", "reason": "invalid_json", "stage": .string(manifest.name)]
                }
            case .malformed(let reason, _, _):
                results[index] = ["index": .int(Int64(index)), "outcome": "quarantine", "reason": .string(reason), "stage": .string(manifest.name)]
            }
        }
        for stage in processChain where !live.isEmpty {
            let chunk = Chunk(id: "dry-run-\(UUID().uuidString.lowercased())", events: live.map(\.event))
            let outcomes: [Outcome]
            do {
                outcomes = try await stage.invoke(chunk, attempt: 1)
            } catch {
                throw Problem(error.kind == .retryable ? .serviceUnavailable : .unprocessableContent, code: error.code,
                              detail: error.message, extra: ["stage": .string(stage.manifest.name)])
            }
            var next: [(index: Int, event: Event)] = []
            for (item, outcome) in zip(live, outcomes) {
                switch outcome {
                case .forward(let event, _): next.append((item.index, event))
                case .fanOut(let events, _): next += events.map { (item.index, $0) }
                case .drop(let reason):
                    results[item.index] = ["index": .int(Int64(item.index)), "outcome": "drop", "reason": .string(reason),
                                           "stage": .string(stage.manifest.name)]
                case .quarantine(let reason, _, _):
                    results[item.index] = ["index": .int(Int64(item.index)), "outcome": "quarantine", "reason": .string(reason),
                                           "stage": .string(stage.manifest.name)]
                }
            }
            live = next
        }
        for item in live {
            results[item.index] = ["index": .int(Int64(item.index)), "outcome": "forward", "row": item.event.value]
        }
        var counts: JSONObject = ["forward": 0, "drop": 0, "quarantine": 0]
        for result in results {
            if let outcome = result["outcome"]?.stringValue, case .int(let n)? = counts[outcome] { counts[outcome] = .int(n + 1) }
        }
        return JSONResponse(status: .ok, value: [
            "stages": .array(processChain.map { .string($0.manifest.name) }), "counts": .object(counts), "results": .array(results),
        ])
    }
}
