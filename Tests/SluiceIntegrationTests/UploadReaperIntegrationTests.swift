import Foundation
import Logging
import NIOPosix
import Sluice
import SluicePostgres
import SluiceRedis
@testable import SluiceFunctions
import Testing

/// The reaper's decisions against real PostgreSQL job rows and real Redis job state.
@Suite("Upload reaper", .serialized)
struct UploadReaperIntegrationTests {
    @Test func settlesOnlyJobsWhoseIngestProcessIsGone() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["SLUICE_DATABASE_URL"], let redisURL = environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL and SLUICE_REDIS_URL are not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let pool = PostgresPool(url: databaseURL, threadPool: threadPool, maxConnections: 2)
        try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
        var endpoint = try RedisEndpoint(url: redisURL)
        endpoint.database = 11
        let redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        try await redis.send(["FLUSHDB"])
        let keys = StreamKeys()
        let jobs = JobStore(pool: pool, redis: redis, keys: keys, logger: Logger(label: "test"))

        func job(status: String, age: String, received: Int? = nil) async throws -> String {
            let id = UUID().uuidString.lowercased()
            try await pool.query("""
                INSERT INTO jobs (id, status, format, counts, created_at)
                VALUES (\(id)::uuid, \(status), 'ndjson', \(received.map { "{\"received\": \($0)}" } ?? "{}")::jsonb, now() - \(age)::interval)
                """)
            try await redis.send(["HSET", RedisArgument(keys.job(id)), "state", "received"])
            return id
        }
        // More than a page of older jobs that are rightly processing (no Redis state to fix) must
        // not hide the ones below from the reaper.
        try await pool.query("""
            INSERT INTO jobs (id, status, format, counts, created_at)
            SELECT gen_random_uuid(), 'processing', 'reaper-filler', '{}'::jsonb, now() - interval '1 day' - make_interval(secs => i)
            FROM generate_series(1, 1100) AS i
            """)
        let abandoned = try await job(status: "received", age: "10 minutes")
        let alive = try await job(status: "received", age: "10 minutes")
        try await redis.send(["SET", RedisArgument(keys.uploadLease(alive)), "1", "PX", "60000"])
        let young = try await job(status: "received", age: "0 seconds")
        let halfEnded = try await job(status: "processing", age: "10 minutes", received: 4)
        try await redis.send(["HSET", RedisArgument(keys.job(halfEnded)), "loaded", "1"])
        let unknownToRedis = try await job(status: "received", age: "10 minutes")
        try await redis.send(["DEL", RedisArgument(keys.job(unknownToRedis))])

        let failed = FailedJobs()
        let reaper = UploadReaper(jobs: jobs, lease: .seconds(60), interval: .seconds(1),
                                  logger: Logger(label: "test"), fail: { id, code in await failed.add(id, code) })
        let settled = Set(await reaper.reapOnce())
        let mine: Set = [abandoned, alive, young, halfEnded, unknownToRedis]
        #expect(settled.intersection(mine) == [abandoned, halfEnded, unknownToRedis])
        let calls = await failed.calls.filter { mine.contains($0.id) }
        #expect(Set(calls.map(\.id)) == [abandoned, unknownToRedis])
        #expect(calls.allSatisfy { $0.code == "upload_interrupted" })
        // The half-ended job got its final count in Redis and goes on processing.
        let state = try await jobs.live(halfEnded)
        #expect(state.status == .processing)
        #expect(state.fields["received"] == "4")
        // A second pass changes nothing more for these jobs.
        await failed.reset()
        let again = Set(await reaper.reapOnce())
        #expect(again.intersection([alive, young, halfEnded]).isEmpty)
        try await pool.query("DELETE FROM jobs WHERE id = ANY(\("{" + mine.joined(separator: ",") + "}")::uuid[]) OR format = 'reaper-filler'")
        redis.closeIdle()
        try await threadPool.shutdownGracefully()
    }
}

private actor FailedJobs {
    var calls: [(id: String, code: String)] = []
    func add(_ id: String, _ code: String) { calls.append((id, code)) }
    func reset() { calls = [] }
}
