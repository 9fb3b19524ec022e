import Foundation
import Logging
import NIOPosix
import Sluice
import SluiceUploads
import SluiceFunctions
import SluiceRedis
import Testing

/// The validate function with real Redis for its first-seen marks.
@Suite("Validate function", .serialized)
struct ValidateIntegrationTests {
    func withValidate(db: Int, now: Int64, _ body: (any EventFunction, FunctionInvoker) async throws -> Void) async throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_REDIS_URL is not set: run the suite with `make test`")
        }
        var endpoint = try RedisEndpoint(url: url)
        endpoint.database = db
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        try await redis.send(["FLUSHDB"])
        let manifest = Manifest(name: "validate", handler: "validate", triggers: [.stream("validate")], outputs: ["enrich"])
        let function = try ValidateFunction(setup: .testing(manifest, threadPool: threadPool, redis: redis),
                                            clock: { now })
        let result: Result<Void, any Error>
        do {
            result = .success(try await body(function, FunctionInvoker(manifest: manifest, function: function, logger: Logger(label: "test"))))
        } catch {
            result = .failure(error)
        }
        redis.closeIdle()
        try await threadPool.shutdownGracefully()
        try result.get()
    }

    func event(_ id: String?, _ timestamp: String = "2026-11-23T11:00:00Z") -> Event {
        var value: JSONValue = [
            "metadata": ["timestamp": .string(timestamp)],
            "user": ["id": "u"],
            "payload": ["event_type": "login"],
        ]
        if let id { value.setValue(.string(id), atPath: "metadata.event_id") }
        return Event(value)
    }

    @Test func outcomesAndRedelivery() async throws {
        let now = Timestamp.milliseconds("2026-11-23T12:00:00Z")!
        try await withValidate(db: 11, now: now) { (_: any EventFunction, invoker: FunctionInvoker) async throws -> Void in
            let chunk = Chunk(id: "10-0", events: [
                event("a"), event(nil), event("b", "2026-11-20T00:00:00Z"), event("a"), event("c", "2026-11-23T13:00:00Z"), event("d"),
            ])
            let expected: [Outcome] = [
                .forward(chunk.events[0]),
                .quarantine(reason: "missing_field", event: chunk.events[1], field: "metadata.event_id"),
                .drop(reason: "stale"),
                .drop(reason: "duplicate"),
                .quarantine(reason: "future_timestamp", event: chunk.events[4], field: "metadata.timestamp"),
                .forward(chunk.events[5]),
            ]
            #expect(try await invoker.invoke(chunk, attempt: 1) == expected)
            // Delivered again after a crash: the same outcomes, nothing is its own duplicate.
            #expect(try await invoker.invoke(chunk, attempt: 2) == expected)
            // Redriven in a new entry, the chunk keeps its identity.
            var redriven = chunk
            redriven.id = "99-0"
            redriven.origin = "10-0"
            #expect(try await invoker.invoke(redriven, attempt: 1) == expected)
            // Another upload with a and e: a is a duplicate across uploads.
            let later = Chunk(id: "11-0", events: [event("a"), event("e")])
            #expect(try await invoker.invoke(later, attempt: 1) == [.drop(reason: "duplicate"), .forward(later.events[1])])
        }
    }

    /// Every planted fate of a gen_events.py workload, as validate sees it.
    @Test func workloadCountsMatchTheManifest() async throws {
        let generated = try WorkloadDecodingTests().generate("ndjson", count: 5_000)
        let now = try #require(generated.manifest["now"]?.stringValue.flatMap(Timestamp.milliseconds))
        let records = try WorkloadDecodingTests().decodeInPieces(NDJSONDecoder(), generated.body)
        let events = records.compactMap { if case .event(let value, _) = $0 { Event(value) } else { nil } }
        #expect(events.count == 5_000)
        try await withValidate(db: 12, now: now) { (_: any EventFunction, invoker: FunctionInvoker) async throws -> Void in
            var counts: [String: Int] = [:]
            for start in stride(from: 0, to: events.count, by: 500) {
                let chunk = Chunk(id: "\(start)-0", events: Array(events[start..<min(start + 500, events.count)]))
                for outcome in try await invoker.invoke(chunk, attempt: 1) {
                    switch outcome {
                    case .forward, .fanOut: counts["forward", default: 0] += 1
                    case .drop(let reason): counts[reason, default: 0] += 1
                    case .quarantine: counts["quarantined", default: 0] += 1
                    }
                }
            }
            let expected = try #require(generated.manifest["expected"])
            #expect(counts["quarantined"] == Int(expected["quarantined"]?.intValue ?? -1))
            #expect(counts["stale"] == Int(expected["stale"]?.intValue ?? -1))
            #expect(counts["duplicate"] == Int(expected["duplicate"]?.intValue ?? -1))
            // Consent is checked later (privacy issue): those events pass validation.
            #expect(counts["forward"] == Int((expected["loaded"]?.intValue ?? 0) + (expected["no_consent"]?.intValue ?? 0)))
        }
    }
}
