import Foundation
import Logging
import NIOPosix
import Sluice
import SluiceFunctions
import SluiceRedis
import Testing

/// Bounded work per input against a real redis-server: dead-letter streams trimmed by their
/// manifest's policy, event ids that cannot become keys, chunks cut by bytes.
@Suite("Bounds", .serialized)
struct BoundsIntegrationTests {
    /// Runs `body` with a client on Redis database `db`, emptied first.
    func withRedis(db: Int, _ body: (RedisClient) async throws -> Void) async throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_REDIS_URL is not set: run the suite with `make test`")
        }
        var endpoint = try RedisEndpoint(url: url)
        endpoint.database = db
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        let result: Result<Void, any Error>
        do {
            try await redis.send(["FLUSHDB"])
            result = .success(try await body(redis))
        } catch {
            result = .failure(error)
        }
        redis.closeIdle()
        try await threadPool.shutdownGracefully()
        try result.get()
    }

    // MARK: - Dead letters

    /// Runs a stream trigger for `manifest` on `keys` with `function` until its group has
    /// acknowledged `last` and `until` holds (checked every 50 ms, at most 20 s).
    func runTrigger(_ manifest: Manifest, _ function: any EventFunction, redis: RedisClient, keys: StreamKeys, last: String,
                    until: @escaping () async throws -> Bool = { true }) async throws {
        let trigger = StreamTrigger(
            invoker: FunctionInvoker(manifest: manifest, function: function, logger: Logger(label: "test")), redis: redis,
            configuration: .init(keys: keys, blockTime: .milliseconds(100), maintenanceInterval: .milliseconds(100)),
            logger: Logger(label: "test"))
        let run = Task { try await trigger.run() }
        let input = keys.stream(manifest.inputStream!), deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let state = try await redis.groupState(stream: input, group: manifest.name)
            if let state, state.lag == 0, state.pending == 0, state.lastDelivered == last, try await until() { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        run.cancel()
        _ = await run.result
    }

    /// A stream trigger whose function fails every chunk for good dead-letters them all; its
    /// dead-letter stream loses an entry older than `dead_letters.max_age` (there before the
    /// trigger started) to the trigger's maintenance, and keeps at most `max_length` entries,
    /// the newest, on every append.
    @Test func aDeadLetterStreamIsTrimmedToItsPolicy() async throws {
        try await withRedis(db: 40) { redis in
            let keys = StreamKeys(hashTag: "b40")
            var manifest = Manifest(name: "doomed", handler: "doomed", triggers: [.stream("doomed")], concurrency: 1,
                                    retry: RetryPolicy(maxAttempts: 1))
            manifest.deadLetters = DeadLetterPolicy(maxAge: .seconds(3600), maxLength: 12)
            let dlq = keys.deadLetters("doomed"), input = keys.stream("doomed")
            let function = ClosureEventFunction { _, _ in throw FunctionError.permanent("always", "fails on purpose") }
            func chunks(_ range: Range<Int>) async throws -> [String] {
                var ids: [String] = []
                for i in range {
                    ids.append(try await redis.add(stream: input, fields: ChunkCodec.encode(events: [Event(["id": .string("e\(i)")])], jobID: nil, traceID: nil)))
                }
                return ids
            }
            // A dead letter from long ago (its id is its time: 1 s after the epoch), then ten
            // chunks: eleven entries are within max_length 12, so only its age can remove it.
            try await redis.send(["XADD", RedisArgument(dlq), "1000-0", "n", "0", "source_id", "ancient"])
            let first = try await chunks(0..<10)
            try await runTrigger(manifest, function, redis: redis, keys: keys, last: first.last!) {
                try await redis.range(stream: dlq).first?.field("source_id") != "ancient"
            }
            #expect(try await redis.range(stream: dlq).map { $0.field("source_id") } == first.map { Optional($0) })

            // The policy lowered to 3: five more chunks leave exactly the newest three.
            manifest.deadLetters = DeadLetterPolicy(maxAge: .seconds(3600), maxLength: 3)
            let second = try await chunks(10..<15)
            try await runTrigger(manifest, function, redis: redis, keys: keys, last: second.last!)
            let kept = try await redis.range(stream: dlq)
            #expect(kept.map { $0.field("source_id") } == second.suffix(3).map { Optional($0) })
            #expect(kept.allSatisfy { $0.field("error_code") == "always" && $0.field("n") == "1" })
            #expect(try await redis.send(["XLEN", RedisArgument(dlq)]).int == 3)
        }
    }

    /// `trim(stream:maxLength:maxAge:)` by age (Redis's clock) and by length, exactly.
    @Test func trimmingByAgeAndLength() async throws {
        try await withRedis(db: 40) { redis in
            let stream = "{b40}:dlq:trim"
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
            // Two hours, ninety minutes and thirty minutes old, then five new ones.
            for minutes in [120, 90, 30] {
                try await redis.send(["XADD", RedisArgument(stream), RedisArgument("\(nowMs - Int64(minutes) * 60_000)-0"), "m", RedisArgument(minutes)])
            }
            for i in 0..<5 { try await redis.add(stream: stream, fields: [("m", Array("new\(i)".utf8))]) }
            #expect(try await redis.trim(stream: stream, maxLength: nil, maxAge: .seconds(3600)) == 2)
            #expect(try await redis.range(stream: stream).map { $0.field("m") } == ["30", "new0", "new1", "new2", "new3", "new4"])
            #expect(try await redis.trim(stream: stream, maxLength: 4, maxAge: nil) == 2)
            #expect(try await redis.range(stream: stream).map { $0.field("m") } == ["new1", "new2", "new3", "new4"])
            #expect(try await redis.trim(stream: stream, maxLength: 4, maxAge: .seconds(3600)) == 0)
            #expect(try await redis.trim(stream: "{b40}:dlq:none", maxLength: 4, maxAge: .seconds(60)) == 0)
            #expect(try await redis.send(["EXISTS", "{b40}:dlq:none"]).int == 0)
        }
    }

    // MARK: - Event ids

    /// A 400 KB event id (and one holding NUL) is quarantined as `invalid_event_id` before the
    /// deduplication step; the others are deduplicated as before, and every first-seen mark is
    /// named by a digest of fixed length that holds no id.
    @Test func anOverlongEventIDIsQuarantinedAndLeavesNoMark() async throws {
        try await withRedis(db: 41) { redis in
            let manifest = Manifest(name: "validate", handler: "validate", triggers: [.stream("validate")], outputs: ["enrich"])
            let now = Timestamp.milliseconds("2026-11-23T12:00:00Z")!
            let function = try ValidateFunction(setup: .testing(manifest, redis: redis),
                                                clock: { now })
            let invoker = FunctionInvoker(manifest: manifest, function: function, logger: Logger(label: "test"))
            func event(_ id: String) -> Event {
                Event(["metadata": ["event_id": .string(id), "timestamp": "2026-11-23T11:00:00Z"], "user": ["id": "u"],
                       "payload": ["event_type": "login"]])
            }
            let huge = String(repeating: "x", count: 400_000)
            let longest = String(repeating: "é", count: 128)  // 256 bytes: the limit, accepted
            let chunk = Chunk(id: "1-0", events: [
                event("ok-1"), event(huge), event("bad\u{0}id"), event(longest), event(longest + "z"), event("ok-1"), event(""),
            ])
            let outcomes = try await invoker.invoke(chunk, attempt: 1)
            #expect(outcomes == [
                .forward(chunk.events[0]),
                .quarantine(reason: "invalid_event_id", event: chunk.events[1], field: "metadata.event_id"),
                .quarantine(reason: "invalid_event_id", event: chunk.events[2], field: "metadata.event_id"),
                .forward(chunk.events[3]),
                .quarantine(reason: "invalid_event_id", event: chunk.events[4], field: "metadata.event_id"),
                .drop(reason: "duplicate"),
                .quarantine(reason: "missing_field", event: chunk.events[6], field: "metadata.event_id"),
            ])
            let marks = try await redis.send(["KEYS", "*"]).array?.compactMap(\.text) ?? []
            let prefix = "{sluice}:dedup:"
            // A mark is the digest of the dataset's name and the key: keys of two datasets never meet.
            #expect(Set(marks) == [prefix + StreamKeys.dedupDigest("events\u{1F}ok-1"), prefix + StreamKeys.dedupDigest("events\u{1F}" + longest)])
            #expect(marks.allSatisfy { $0.utf8.count == prefix.utf8.count + StreamKeys.dedupDigestLength })
            #expect(!marks.contains { $0.contains("ok-1") || $0.contains("xxxx") || $0.contains("é") })
            // The marks still work: the same ids in a later chunk are duplicates.
            let later = Chunk(id: "2-0", events: [event("ok-1"), event(longest), event("ok-2")])
            #expect(try await invoker.invoke(later, attempt: 1) == [.drop(reason: "duplicate"), .drop(reason: "duplicate"), .forward(later.events[2])])
        }
    }

    // MARK: - Chunks by bytes

    /// A stage whose function makes events larger than `max_chunk_bytes` allows writes its
    /// output as several entries, each within the limit, in one acknowledgement.
    @Test func aStageThatGrowsEventsSplitsItsOutputByBytes() async throws {
        try await withRedis(db: 40) { redis in
            let keys = StreamKeys(hashTag: "b40")
            var manifest = Manifest(name: "grow", handler: "grow", triggers: [.stream("grow")], outputs: ["next"], concurrency: 1)
            manifest.maxChunkBytes = 64 << 10
            // Each 1 KB event becomes 10 KB: 20 events of 10 KB do not fit one 64 KiB chunk.
            let function = ClosureEventFunction { chunk, _ in
                chunk.events.map { event in
                    var value = event.value
                    value.setValue(.string(String(repeating: "p", count: 10_000)), atPath: "pad")
                    return .forward(Event(value))
                }
            }
            let input = keys.stream("grow"), output = keys.stream("next")
            let events = (0..<20).map { Event(["id": .string("g\($0)"), "small": .string(String(repeating: "s", count: 1000))]) }
            let id = try await redis.add(stream: input, fields: ChunkCodec.encode(events: events, jobID: nil, traceID: nil))
            try await runTrigger(manifest, function, redis: redis, keys: keys, last: id)
            let written = try await redis.range(stream: output)
            // 20 × ~11 KB = ~221 KB: at least 4 entries, each within 64 KiB, the events in order.
            #expect(written.count >= 4)
            for entry in written {
                let body = try #require(entry.fields.first { $0.0 == "events" }?.1)
                #expect(body.count <= 64 << 10, "an entry of \(body.count) bytes")
            }
            let ids = try written.flatMap { try ChunkCodec.decode(id: $0.id, fields: $0.fields).events.map { $0.id } }
            #expect(ids == (0..<20).map { "g\($0)" })
        }
    }
}
