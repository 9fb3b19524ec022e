import Foundation
import NIOPosix
import Sluice
import SluiceRedis
import Testing

/// The Redis adapter against a real redis-server (`make test` provides SLUICE_REDIS_URL).
@Suite("Redis adapter", .serialized)
struct RedisIntegrationTests {
    let threadPool: NIOThreadPool
    let redis: RedisClient

    init() async throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_REDIS_URL is not set: run the suite with `make test`")
        }
        var endpoint = try RedisEndpoint(url: url)
        endpoint.database = 9
        threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        try await redis.send(["FLUSHDB"])
    }

    @Test func repliesOfEveryType() async throws {
        #expect(try await redis.send(["SET", "k", "v"]) == .status("OK"))
        #expect(try await redis.send(["GET", "k"]) == .string(Array("v".utf8)))
        #expect(try await redis.send(["GET", "missing"]) == .null)
        #expect(try await redis.send(["INCRBY", "n", 41]) == .integer(41))
        #expect(try await redis.send(["MGET", "k", "missing"]) == .array([.string(Array("v".utf8)), .null]))
        let binary: [UInt8] = [0, 1, 255, 10, 13, 0]
        try await redis.send(["SET", "bin", RedisArgument(binary)])
        #expect(try await redis.send(["GET", "bin"]).bytes == binary)
        await #expect(throws: RedisError.self) { try await redis.send(["INCR", "k"]) }
        let replies = try await redis.pipeline([["PING"], ["INCR", "k"], ["GET", "n"]])
        #expect(replies.count == 3)
        #expect(replies[0] == .status("PONG"))
        if case .error(let message) = replies[1] { #expect(message.hasPrefix("ERR")) } else { Issue.record("expected an error reply") }
        #expect(replies[2].int == 41)
    }

    @Test func unreachableServerIsUnavailableNotAHang() async throws {
        let dead = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: 1), threadPool: threadPool, timeout: .seconds(1))
        let started = ContinuousClock.now
        do {
            try await dead.send(["PING"])
            Issue.record("expected an error")
        } catch let error as RedisError {
            #expect(error.code == .unavailable)
        }
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(await dead.ping() == false)
    }

    @Test func acknowledgeWritesOutputsOnlyOnce() async throws {
        let input = "{t}:stream:in", output = "{t}:stream:out", counters = "{t}:job:j"
        try await redis.ensureGroup(stream: input, group: "g")
        try await redis.ensureGroup(stream: input, group: "g")  // idempotent
        let id = try await redis.add(stream: input, fields: [("v", Array("1".utf8))])
        let read = try await redis.readGroup(stream: input, group: "g", consumer: "c1", count: 10, block: .milliseconds(100))
        #expect(read.map(\.id) == [id])
        let append = RedisClient.Append(stream: output, fields: [("x", Array("y".utf8))])
        // A second consumer claims it (as XAUTOCLAIM would) and both try to acknowledge.
        let claimed = try await redis.claim(stream: input, group: "g", consumer: "c2", id: id)
        #expect(claimed?.id == id)
        #expect(try await redis.deliveryCount(stream: input, group: "g", id: id) == 2)
        let first = try await redis.acknowledge(stream: input, group: "g", id: id, appends: [append], counterKey: counters, counters: [("done", 5)])
        let second = try await redis.acknowledge(stream: input, group: "g", id: id, appends: [append], counterKey: counters, counters: [("done", 5)])
        #expect(first == .written)
        #expect(second == .alreadyAcknowledged)
        #expect(try await redis.send(["XLEN", RedisArgument(output)]).int == 1)
        #expect(try await redis.send(["HGET", RedisArgument(counters), "done"]).int == 5)
        #expect(try await redis.groupState(stream: input, group: "g")?.pending == 0)
        #expect(try await redis.deliveryCount(stream: input, group: "g", id: id) == nil)
    }

    /// Every drop reason is a terminal state: a job whose events a function dropped for a reason
    /// of its own settles, counting them as `dropped`, and its announcement carries the trace.
    @Test func aJobSettlesWhateverReasonItsEventsWereDroppedFor() async throws {
        let keys = StreamKeys(hashTag: "drops")
        let job = "6f1c2e4a-0000-4000-8000-000000000001", trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        let input = keys.stream("stage"), jobs = keys.stream("jobs")
        try await redis.send(["EVAL", RedisArgument(JobScripts.begin), "1", RedisArgument(keys.job(job)), RedisArgument(trace)])
        #expect(try await redis.send(["EVAL", RedisArgument(JobScripts.finishReceiving), "2", RedisArgument(keys.job(job)),
                                      RedisArgument(jobs), "10"]).text == JobStatus.processing.rawValue)
        try await redis.ensureGroup(stream: input, group: "g")
        for counters in [[("loaded", 4), ("dropped.filtered", 3)], [("loaded", 2), ("dropped.stale", 0), ("dropped.not_wanted", 1)]] {
            let id = try await redis.add(stream: input, fields: [("v", Array("1".utf8))])
            _ = try await redis.readGroup(stream: input, group: "g", consumer: "c", count: 1, block: .milliseconds(100))
            #expect(try await redis.acknowledge(stream: input, group: "g", id: id, appends: [], counterKey: keys.job(job),
                                                counters: counters, events: counters.map(\.1).reduce(0, +), honourJobState: true, jobEvents: jobs) == .written)
        }
        #expect(try await redis.send(["HGET", RedisArgument(keys.job(job)), "state"]).text == "completed")
        let announced = try await redis.range(stream: jobs)
        #expect(announced.count == 1)
        let entry = try #require(announced.first)
        #expect(entry.field("trace") == trace)
        #expect(entry.field("job") == nil, "the announcement is not a chunk of the job")
        let event = try JSONParser().parse(Array((entry.field("events") ?? "").utf8))[0]
        #expect(event?["status"]?.stringValue == "completed")
        #expect(event?["counts"]?["loaded"]?.intValue == 6)
        #expect(event?["counts"]?["dropped"]?.intValue == 4)
        #expect(event?["counts"]?["stale"]?.intValue == 0)
        #expect(event?["counts"]?["received"]?.intValue == 10)
    }

    @Test func autoClaimTakesOnlyIdleEntries() async throws {
        let stream = "{t}:stream:claim"
        try await redis.ensureGroup(stream: stream, group: "g")
        let id = try await redis.add(stream: stream, fields: [("v", Array("1".utf8))])
        _ = try await redis.readGroup(stream: stream, group: "g", consumer: "dead", count: 1, block: .milliseconds(100))
        #expect(try await redis.autoClaim(stream: stream, group: "g", consumer: "alive", minIdle: .seconds(5), count: 10).isEmpty)
        try await Task.sleep(for: .milliseconds(150))
        let claimed = try await redis.autoClaim(stream: stream, group: "g", consumer: "alive", minIdle: .milliseconds(100), count: 10)
        #expect(claimed.map(\.id) == [id])
        #expect(claimed.first?.field("v") == "1")
        #expect(try await redis.deliveryCount(stream: stream, group: "g", id: id) == 2)
    }

    @Test func trimRemovesOnlyAcknowledgedEntries() async throws {
        let stream = "{t}:stream:trim"
        try await redis.ensureGroup(stream: stream, group: "g")
        var ids: [String] = []
        for i in 0..<300 { ids.append(try await redis.add(stream: stream, fields: [("i", Array(String(i).utf8))])) }
        let read = try await redis.readGroup(stream: stream, group: "g", consumer: "c", count: 200, block: .milliseconds(100))
        #expect(read.count == 200)
        // Acknowledge the first 150; entry 150 stays pending, 200… are undelivered.
        try await redis.send(["XACK", RedisArgument(stream), "g"] + ids[0..<150].map { RedisArgument($0) })
        try await redis.trimAcknowledged(stream: stream)
        let left = try await redis.range(stream: stream, count: 1000)
        // MINID ~ trims whole macro nodes only, so some acknowledged entries may remain, but
        // every unacknowledged one must.
        #expect(Set(ids[150...]).isSubset(of: Set(left.map(\.id))))
        #expect(left.count <= 300)
        try await redis.send(["XTRIM", RedisArgument(stream), "MINID", RedisArgument(ids[150])])
        #expect(try await redis.range(stream: stream, count: 1000).count == 150)
    }
}

struct IntegrationSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("First-seen marks", .serialized)
struct DedupIntegrationTests {
    @Test func duplicatesAcrossChunksButNotAcrossRedeliveries() async throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_REDIS_URL is not set: run the suite with `make test`")
        }
        var endpoint = try RedisEndpoint(url: url)
        endpoint.database = 10
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        try await redis.send(["FLUSHDB"])
        let keys = ["{t}:dedup:a", "{t}:dedup:b", "{t}:dedup:a"]
        // First delivery of chunk 1: a and b are new; the second a in the same chunk is a duplicate.
        #expect(try await redis.claimFirstSeen(keys: keys, positions: [0, 1, 2], chunkIdentity: "1-0", ttl: .seconds(60)) == [.first, .first, .duplicate])
        // The same chunk delivered again (a crash before its ack): same answers, nothing is a duplicate of itself.
        #expect(try await redis.claimFirstSeen(keys: keys, positions: [0, 1, 2], chunkIdentity: "1-0", ttl: .seconds(60)) == [.first, .first, .duplicate])
        // Another chunk with a and c: a is a duplicate, c is new.
        #expect(try await redis.claimFirstSeen(keys: ["{t}:dedup:a", "{t}:dedup:c"], positions: [0, 1], chunkIdentity: "2-0", ttl: .seconds(60)) == [.duplicate, .first])
        // Marks expire.
        #expect(try await redis.claimFirstSeen(keys: ["{t}:dedup:d"], positions: [0], chunkIdentity: "3-0", ttl: .milliseconds(50)) == [.first])
        try await Task.sleep(for: .milliseconds(120))
        #expect(try await redis.claimFirstSeen(keys: ["{t}:dedup:d"], positions: [0], chunkIdentity: "4-0", ttl: .seconds(60)) == [.first])
        #expect(try await redis.claimFirstSeen(keys: [], positions: [], chunkIdentity: "5-0", ttl: .seconds(60)) == [])

        // Marks held by a job that failed or was cancelled are void: the same events uploaded
        // again (another job) are new, for the dry run's peek as for the claim.
        let streamKeys = StreamKeys(hashTag: "t")
        try await redis.send(["HSET", RedisArgument(streamKeys.job("j1")), "state", "processing"])
        let marks = ["{t}:dedup:e", "{t}:dedup:f"]
        #expect(try await redis.claimFirstSeen(keys: marks, positions: [0, 1], chunkIdentity: "6-0", jobID: "j1", ttl: .seconds(60), streamKeys: streamKeys) == [.first, .first])
        #expect(try await redis.peekSeen(keys: marks + ["{t}:dedup:g"], streamKeys: streamKeys) == [true, true, false])
        #expect(try await redis.claimFirstSeen(keys: marks, positions: [0, 1], chunkIdentity: "7-0", jobID: "j2", ttl: .seconds(60), streamKeys: streamKeys) == [.duplicate, .duplicate])
        try await redis.send(["HSET", RedisArgument(streamKeys.job("j1")), "state", "failed"])
        #expect(try await redis.peekSeen(keys: marks, streamKeys: streamKeys) == [false, false])
        #expect(try await redis.claimFirstSeen(keys: marks, positions: [0, 1], chunkIdentity: "7-0", jobID: "j2", ttl: .seconds(60), streamKeys: streamKeys) == [.first, .first])
        // j2 holds them now: a third job finds them taken, but only once j2 is received: while
        // it is being received they are pending (j2 may yet fail and take its rows with it).
        try await redis.send(["HSET", RedisArgument(streamKeys.job("j2")), "state", "received"])
        #expect(try await redis.claimFirstSeen(keys: marks, positions: [0, 1], chunkIdentity: "8-0", jobID: "j3", ttl: .seconds(60), streamKeys: streamKeys) == [.pending, .pending])
        #expect(try await redis.claimFirstSeen(keys: marks, positions: [0, 1], chunkIdentity: "7-0", jobID: "j2", ttl: .seconds(60), streamKeys: streamKeys) == [.first, .first])
        try await redis.send(["HSET", RedisArgument(streamKeys.job("j2")), "state", "processing"])
        #expect(try await redis.peekSeen(keys: marks, streamKeys: streamKeys) == [true, true])
        #expect(try await redis.claimFirstSeen(keys: marks, positions: [0, 1], chunkIdentity: "8-0", jobID: "j3", ttl: .seconds(60), streamKeys: streamKeys) == [.duplicate, .duplicate])
        redis.closeIdle()
        try await threadPool.shutdownGracefully()
    }
}

@Suite("Token buckets")
struct TokenBucketIntegrationTests {
    @Test func aBucketAllowsItsBurstThenRefusesUntilItRefills() async throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_REDIS_URL is not set: run the suite with `make test`")
        }
        var endpoint = try RedisEndpoint(url: url)
        endpoint.database = 8  // no suite flushes it: the buckets must outlive the test's own steps
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        let slow = "test:ratelimit:\(UUID().uuidString)"
        // One token per 100 s, three at once: three pass, the fourth waits ~100 s.
        var decisions: [RedisClient.RateLimitDecision] = []
        for _ in 0..<4 { decisions.append(try await redis.takeToken(key: slow, rate: 0.01, burst: 3)) }
        #expect(decisions.map(\.allowed) == [true, true, true, false])
        #expect(decisions.map(\.remaining) == [2, 1, 0, 0])
        #expect(decisions[3].retryAfter > .seconds(90) && decisions[3].retryAfter <= .seconds(100))  // less the refill of the seconds the takes took
        #expect(decisions[2].resetAfter > .seconds(290) && decisions[2].resetAfter <= .seconds(300))
        // The bucket expires once it would be full again: nothing is left behind.
        let ttl = try await redis.send(["PTTL", RedisArgument(slow)]).int ?? -1
        #expect(ttl > 290_000 && ttl <= 301_000, "PTTL \(ttl)")

        // A fast bucket refills: 1,000 per second, one at a time.
        let fast = "test:ratelimit:\(UUID().uuidString)"
        #expect(try await redis.takeToken(key: fast, rate: 1000, burst: 1).allowed)
        try await Task.sleep(for: .milliseconds(20))
        #expect(try await redis.takeToken(key: fast, rate: 1000, burst: 1).allowed)
        try await redis.send(["DEL", RedisArgument(slow), RedisArgument(fast)])
        redis.closeIdle()
        try await threadPool.shutdownGracefully()
    }
}
