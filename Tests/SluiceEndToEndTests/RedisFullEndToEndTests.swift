import Foundation
import Sluice
import SluiceRedis
import Testing

/// A Redis that reaches `maxmemory` (with the default `noeviction` policy, as docs/deploying.md
/// recommends) refuses the writes that would grow it. An upload that meets it is refused with
/// a problem naming its job, the job fails and keeps nothing in the warehouse; once Redis has
/// room again, the same upload is accepted and accounted for exactly. The test runs its own
/// redis-server and PostgreSQL: `maxmemory` is a server-wide setting.
@Suite("Redis full end to end", .serialized)
struct RedisFullEndToEndTests {
    /// Runs `body` on a pipeline with servers of its own.
    func withOwnServers(_ body: @escaping @Sendable (PipelineFixture) async throws -> Void) async throws {
        let base = try TestEnvironment.get()
        let script = try #require(base.serversScript, "SLUICE_SERVERS_SCRIPT is not set: run with `make test`")
        let serversDirectory = try makeTemporaryDirectory("redis-full-servers")
        let started = try await runCommand("/bin/bash", [script, "start", serversDirectory])
        try #require(started.status == 0, "servers.sh start failed: \(started.error)")
        let result: Result<Void, any Error>
        do {
            let servers = try base.with(serversEnv: "\(serversDirectory)/env")
            try await PipelineFixture.with(db: 0, manifests: try PipelineFixture.pipelineManifests(), servers: servers) { fixture in
                try await fixture.startPipeline()
                try await body(fixture)
            }
            result = .success(())
        } catch {
            result = .failure(error)
        }
        _ = try? await runCommand("/bin/bash", [script, "stop", serversDirectory])
        try result.get()
    }

    /// A cancel that PostgreSQL records while Redis refuses writes is answered 200 and reaches
    /// Redis once it has room (before, it answered 503, and the client's retry got 409 while
    /// Redis never learnt of the cancel).
    @Test func aCancelRedisRefusesIsAnsweredAndReachesRedisLater() async throws {
        try await withOwnServers { fixture in
            let body = ndjsonClicks(idPrefix: "cancel", count: 1_000)
            // An upload still being received: it promises a megabyte more than it sends.
            let client = try RawConnection(port: fixture.ports["ingest"]!, timeout: .seconds(60))
            defer { client.disconnect() }
            _ = client.send(RawHTTP.request("POST", "/api/v1/ingest", headers: [
                ("Content-Type", "application/x-ndjson"), ("Content-Length", String(body.count + 1_000_000)),
            ]) + Array(body))
            var id: String?
            let deadline = ContinuousClock.now + .seconds(30)
            while id == nil, ContinuousClock.now < deadline {
                id = try await fixture.clients.postgres.query("SELECT id::text FROM jobs").scalar
                if id == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            let job = try #require(id, "the upload's job was not recorded")
            // Both chunks of what it sent are appended (and loaded) before Redis fills up: the
            // upload itself must not be what meets the full Redis.
            while try await fixture.warehouseRows(job: job) != 1_000, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await fixture.warehouseRows(job: job) == 1_000, "the stalled upload's chunks were not loaded")
            let redis = fixture.clients.redis
            #expect(try await redis.send(["HGET", RedisArgument(StreamKeys().job(job)), "state"]).text == "received")

            _ = try await redis.send(["CONFIG", "SET", "maxmemory", "1"])
            let cancelled = try await HTTP.request("DELETE", fixture.url("ingest", "/api/v1/jobs/\(job)"))
            #expect(cancelled.status == 200, "\(cancelled.text)")
            #expect(try JSONParser().parse(Array(cancelled.body))["status"]?.stringValue == "cancelled", "\(cancelled.text)")
            #expect(try await redis.send(["HGET", RedisArgument(StreamKeys().job(job)), "state"]).text == "received", "Redis refused the cancel while full")

            _ = try await redis.send(["CONFIG", "SET", "maxmemory", "0"])
            let until = ContinuousClock.now + .seconds(15)
            while try await redis.send(["HGET", RedisArgument(StreamKeys().job(job)), "state"]).text != "cancelled", ContinuousClock.now < until {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await redis.send(["HGET", RedisArgument(StreamKeys().job(job)), "state"]).text == "cancelled", "the cancel reached Redis once it had room")
            let again = try await HTTP.request("DELETE", fixture.url("ingest", "/api/v1/jobs/\(job)"))
            #expect(again.status == 409, "\(again.text)")

            // The client goes away: its cut-off body must not turn the cancelled job into a failed
            // one, nor delete the rows a cancelled job keeps.
            client.disconnect()
            let status = { try await fixture.clients.postgres.query("SELECT status FROM jobs WHERE id = \(job)::uuid").scalar }
            try await Task.sleep(for: .seconds(2))
            #expect(try await status() == "cancelled")
            #expect(try await fixture.warehouseRows(job: job) == 1_000)
            #expect(try await redis.send(["HGET", RedisArgument(StreamKeys().job(job)), "state"]).text == "cancelled")
        }
    }

    @Test func aFullRedisRefusesTheUploadKeepsNothingOfItAndRecovers() async throws {
        try await withOwnServers { fixture in
            let workload = try await GeneratedWorkload.make(count: 20_000, seed: 611, format: "ndjson", in: fixture.directory)
            let redis = fixture.clients.redis
            let info = try #require(try await redis.send(["INFO", "memory"]).text)
            let usedLine = try #require(info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("used_memory:") })
            let used = try #require(Int(usedLine.dropFirst("used_memory:".count)))
            // Room for about 1 MB more: the upload's 20,000 events take ~12 MB in validate's stream alone.
            _ = try await redis.send(["CONFIG", "SET", "maxmemory", .init(used + 1_000_000)])

            let refused = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(refused.status == 503, "\(refused.body.serializedString)")
            #expect(refused.body["code"]?.stringValue == "ingest_unavailable", "\(refused.body.serializedString)")
            let refusedJob = try #require(refused.body["job_id"]?.stringValue, "the problem names the job")
            let failed = try await fixture.waitForJob(refusedJob)
            #expect(failed["status"]?.stringValue == "failed", "\(failed.serializedString)")
            #expect(failed["error"]?.stringValue == "ingest_unavailable", "\(failed.serializedString)")

            _ = try await redis.send(["CONFIG", "SET", "maxmemory", "0"])
            // Chunks of the refused upload still in the streams are dropped once Redis has room;
            // whatever of it was loaded before it failed is deleted, and nothing comes after.
            let deadline = ContinuousClock.now + .seconds(60)
            var settled = try await fixture.job(refusedJob)
            while settled.count("in_flight") != 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                settled = try await fixture.job(refusedJob)
            }
            #expect(settled.count("in_flight") == 0, "the refused upload's chunks still in flight after 60 s: \(settled.serializedString)")
            #expect(try await fixture.warehouseRows(job: refusedJob) == 0)

            let accepted = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(accepted.status == 202, "\(accepted.body.serializedString)")
            let id = try #require(accepted.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed", "\(job.serializedString)")
            #expect(job.count("received") == workload.count)
            for name in ["loaded", "quarantined", "stale", "duplicate", "no_consent"] {
                #expect(job.count(name) == workload.expected[name], "counts.\(name): \(job.serializedString)")
            }
            #expect(try await fixture.warehouseRows(job: id) == workload.expected["loaded"])
            #expect(try await fixture.warehouseRows(job: refusedJob) == 0)
            let total = try await fixture.clients.postgres.query("SELECT count(*) FROM events").scalar
            #expect(total == workload.expected["loaded"].map(String.init), "the warehouse holds the accepted upload's rows and no others")
        }
    }
}
