import Foundation
import Sluice
import SluiceRedis
import Testing

/// A Redis that reaches `maxmemory` (with the default `noeviction` policy, as the README
/// recommends) refuses the writes that would grow it. An upload that meets it is refused with
/// a problem naming its job, the job fails and keeps nothing in the warehouse; once Redis has
/// room again, the same upload is accepted and accounted for exactly. The test runs its own
/// redis-server and PostgreSQL: `maxmemory` is a server-wide setting.
@Suite("Redis full end to end", .serialized)
struct RedisFullEndToEndTests {
    @Test func aFullRedisRefusesTheUploadKeepsNothingOfItAndRecovers() async throws {
        let base = try TestEnvironment.get()
        let script = try #require(base.serversScript, "SLUICE_SERVERS_SCRIPT is not set: run with `make test`")
        let serversDirectory = try makeTemporaryDirectory("redis-full-servers")
        let started = try await runCommand("/bin/bash", [script, "start", serversDirectory])
        try #require(started.status == 0, "servers.sh start failed: \(started.error)")
        let result: Result<Void, any Error>
        do {
            result = .success(try await run(servers: try base.with(serversEnv: "\(serversDirectory)/env")))
        } catch {
            result = .failure(error)
        }
        _ = try? await runCommand("/bin/bash", [script, "stop", serversDirectory])
        try result.get()
    }

    func run(servers: TestEnvironment) async throws {
        try await PipelineFixture.with(db: 0, manifests: try PipelineFixture.pipelineManifests(), servers: servers) { fixture in
            try await fixture.startPipeline()
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
            while ContinuousClock.now < deadline {
                let state = try await fixture.job(refusedJob)
                if state.count("in_flight") == 0 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
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
