import Foundation
import Sluice
import SluiceRedis
import Testing

/// The proving chain as deployed: every function its own `sluice serve` process on real
/// Redis and PostgreSQL.
@Suite("Chain of stream functions, end to end", .serialized)
struct ChainEndToEndTests {
    /// 100,000 events through intake → filter → tag → sink while tag (the middle stage) is
    /// killed with SIGKILL and restarted: every event ends exactly once in its terminal state.
    @Test func hundredThousandEventsSurviveKillOfMiddleFunction() async throws {
        try await PipelineFixture.with(db: 1) { pipeline in
            for name in ["intake", "filter", "tag", "sink"] { try await pipeline.start(name) }

            let workload = Workload(count: 100_000, prefix: "k9")
            var jobs: [String] = []
            for start in stride(from: 0, to: workload.events.count, by: 20_000) {
                jobs.append(try await pipeline.upload(Array(workload.events[start..<min(start + 20_000, workload.events.count)])))
            }
            #expect(jobs.count == 5)

            // Kill tag while it holds chunks (it sleeps 20 ms in each), once the sink has begun.
            let tag = pipeline.processes["tag"]!
            let deadline = ContinuousClock.now + .seconds(120)
            while try await pipeline.sinkCounts(jobs: jobs).rows == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            tag.signal(SIGKILL)
            #expect(await tag.waitExit(timeout: .seconds(5)) != nil)
            // Read after the kill: what the dead consumer still holds is what must be reclaimed.
            let pendingAtKill = try await pipeline.clients.redis.groupState(stream: pipeline.keys.stream("tag"), group: "tag")?.pending ?? 0
            let rowsAtKill = try await pipeline.sinkCounts(jobs: jobs).rows
            #expect(rowsAtKill < workload.expectedSunk, "the kill must happen in the middle of the run")
            #expect(pendingAtKill > 0, "tag must hold chunks when killed")
            let restarted = try await pipeline.start("tag")

            try await pipeline.waitUntilDone(jobs: jobs, expected: workload.expectedSunk, streams: ["filter", "tag", "sink"])
            let counts = try await pipeline.sinkCounts(jobs: jobs)
            #expect(counts.rows == workload.expectedSunk)
            #expect(counts.distinct == workload.expectedSunk)
            #expect(try await pipeline.counter("dropped.filtered", jobs: jobs) == workload.expectedDropped)
            #expect(try await pipeline.counter("quarantined.missing_id", jobs: jobs) == workload.expectedQuarantined)
            #expect(try await pipeline.counter("fn.filter.in", jobs: jobs) == 100_000)
            #expect(try await pipeline.counter("fn.tag.in", jobs: jobs) == workload.expectedSunk)
            #expect(try await pipeline.counter("fn.sink.forwarded", jobs: jobs) == workload.expectedSunk)
            #expect(try await pipeline.counter("received", jobs: jobs) == 100_000)
            // Every quarantined event is held, with its reason, in the quarantine stream.
            let quarantine = try await pipeline.clients.redis.range(stream: pipeline.keys.stream("quarantine"), count: 10_000)
            let held = try quarantine.flatMap { try ChunkCodec.decode(id: $0.id, fields: $0.fields).events }
            #expect(held.count == workload.expectedQuarantined)
            #expect(held.allSatisfy { $0.value["reason"] == "missing_id" && $0.value["function"] == "filter" })
            // Every row passed tag exactly once (a second pass would show twice in `stages`).
            let stages = try await pipeline.clients.postgres.query(
                "SELECT count(*) FROM sink_events WHERE job_id = ANY(\("{" + jobs.joined(separator: ",") + "}")::uuid[]) AND event->'stages' = '[\"tag\"]'::jsonb")
            #expect(stages.scalar == String(workload.expectedSunk))
            // The restarted tag reclaimed what the killed one held, and nothing went to a dead letter.
            #expect(restarted.log.contains("reclaimed a chunk left pending"))
            for function in ["filter", "tag", "sink"] {
                #expect(try await pipeline.clients.redis.send(["XLEN", RedisArgument(pipeline.keys.deadLetters(function))]).int == 0)
            }
        }
    }

    /// SIGTERM while tag holds chunks: it finishes them, acknowledges them and exits 0 within
    /// the grace period, leaving nothing pending; after a restart the run completes exactly.
    @Test func sigtermDrainsInFlightChunks() async throws {
        try await PipelineFixture.with(db: 2) { pipeline in
            for name in ["intake", "filter", "tag", "sink"] { try await pipeline.start(name) }
            let workload = Workload(count: 30_000, prefix: "term")
            let job = try await pipeline.upload(workload.events)

            let tag = pipeline.processes["tag"]!
            while try await pipeline.sinkCounts(jobs: [job]).rows == 0 {
                try await Task.sleep(for: .milliseconds(20))
            }
            let started = ContinuousClock.now
            tag.signal(SIGTERM)
            let status = await tag.waitExit(timeout: .seconds(10))
            #expect(status == 0, "exit status after SIGTERM: \(String(describing: status))\n\(tag.tail())")
            #expect(ContinuousClock.now - started < .seconds(10))
            let state = try await pipeline.clients.redis.groupState(stream: pipeline.keys.stream("tag"), group: "tag")
            #expect(state?.pending == 0, "a drained consumer leaves nothing pending")
            #expect((state?.lag ?? 0) > 0, "the run must still have work left when tag stops")

            try await pipeline.start("tag")
            try await pipeline.waitUntilDone(jobs: [job], expected: workload.expectedSunk, streams: ["filter", "tag", "sink"])
            let counts = try await pipeline.sinkCounts(jobs: [job])
            #expect(counts.rows == workload.expectedSunk)
            #expect(counts.distinct == workload.expectedSunk)
            #expect(try await pipeline.counter("dropped.filtered", jobs: [job]) == workload.expectedDropped)
        }
    }

    /// Redis restarted (graceful shutdown, AOF on) in the middle of a run: every trigger
    /// reconnects, readiness is false meanwhile, and the run completes exactly.
    @Test func redisRestartDuringRun() async throws {
        try await PipelineFixture.with(db: 3) { pipeline in
            guard let script = pipeline.environment.serversScript, let serversDirectory = pipeline.environment.serversDirectory else {
                throw TestSetupError("SLUICE_SERVERS_SCRIPT / SLUICE_TEST_SERVERS_DIR are not set: run with `make test`")
            }
            for name in ["intake", "filter", "tag", "sink"] { try await pipeline.start(name) }
            let workload = Workload(count: 30_000, prefix: "rr")
            let job = try await pipeline.upload(workload.events)
            while try await pipeline.sinkCounts(jobs: [job]).rows == 0 {
                try await Task.sleep(for: .milliseconds(20))
            }
            let shutdown = try await runCommand("/usr/bin/env", ["redis-cli", "-p", "\(pipeline.environment.redisBase.port)", "shutdown"])
            #expect(shutdown.status == 0 || shutdown.output.isEmpty)
            try await Task.sleep(for: .milliseconds(300))
            let ready = try await HTTP.request("GET", pipeline.url("tag", "/health/ready"))
            #expect(ready.status == 503)
            #expect(ready.text.contains(#""redis":false"#))
            try await Task.sleep(for: .seconds(1))
            let restart = try await runCommand("/bin/bash", [script, "restart-redis", serversDirectory])
            #expect(restart.status == 0, "restart-redis failed: \(restart.error)")

            try await pipeline.waitUntilDone(jobs: [job], expected: workload.expectedSunk, streams: ["filter", "tag", "sink"])
            let counts = try await pipeline.sinkCounts(jobs: [job])
            #expect(counts.rows == workload.expectedSunk)
            #expect(counts.distinct == workload.expectedSunk)
            #expect(try await pipeline.counter("dropped.filtered", jobs: [job]) == workload.expectedDropped)
            #expect(try await pipeline.counter("quarantined.missing_id", jobs: [job]) == workload.expectedQuarantined)
            let readyAgain = try await HTTP.request("GET", pipeline.url("tag", "/health/ready"))
            #expect(readyAgain.status == 200)
        }
    }
}
