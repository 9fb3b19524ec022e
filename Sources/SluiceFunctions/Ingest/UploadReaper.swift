import Logging
import ServiceLifecycle
import Sluice
import SluicePostgres
import SluiceRedis

/// Settles the jobs whose ingest process died while it held them.
///
/// While a body arrives, the ingest process that receives it keeps a lease on the job in Redis
/// (`{sluice}:upload:<job>`, refreshed every quarter of `upload_lease`). Every `reap_interval`
/// each ingest replica looks for jobs older than the lease whose lease is gone:
/// - still `received`: the body never ended and the client never got an answer; the job fails
///   with `upload_interrupted`, whatever of it was loaded is deleted, and its remaining chunks
///   are dropped (the client uploads again; nothing of the first attempt stays);
/// - `processing` in PostgreSQL but `received` in Redis: the process died between the two
///   writes that end a body; the count PostgreSQL holds is final, so Redis is told it.
/// Replicas may reap the same job at once: both steps take effect once.
struct UploadReaper: Service {
    let pool: PostgresPool
    let redis: RedisClient
    let keys: StreamKeys
    let lease: Duration
    let interval: Duration
    let logger: Logger
    let fail: @Sendable (_ jobID: String, _ code: String) async -> Void

    /// Ends without an error on graceful shutdown: a service that throws (a `CancellationError`
    /// from its sleep) would fail the whole process, which then exits 1 after SIGTERM.
    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.reapOnce()
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    /// One pass; answers the jobs it settled.
    @discardableResult
    func reapOnce() async -> [String] {
        let seconds = Double(lease.milliseconds) / 1000
        var settled: [String] = []
        // Every candidate, a page at a time (keyset on created_at, id): jobs that are rightly
        // processing must not hide newer ones behind a fixed first page.
        var after: (String, String)?
        while true {
            let rows: PostgresRows
            do {
                rows = try await pool.query("""
                    SELECT id::text, status, counts->>'received',
                           to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM jobs
                    WHERE status IN ('received', 'processing') AND created_at < now() - make_interval(secs => $1::float8)
                      AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))
                    ORDER BY created_at, id LIMIT 500
                    """, [String(seconds), after?.0, after?.1])
            } catch {
                logger.warning("reaper cannot read the jobs", metadata: ["error": .string("\(error)")])
                return settled
            }
            for row in rows.rows {
                guard let id = row[0], let status = row[1] else { continue }
                do {
                    guard try await redis.send(["EXISTS", RedisArgument(keys.uploadLease(id))]).int == 0 else { continue }
                    let state = try await redis.jobState(id, keys: keys).state
                    if status == "received", state == nil || state == "received" {
                        await fail(id, "upload_interrupted")
                        logger.warning("upload interrupted: its ingest process stopped before the body ended; job failed",
                                       metadata: ["job": .string(id)])
                        settled.append(id)
                    } else if status == "processing", state == "received", let received = row[2].flatMap(Int.init) {
                        try await redis.finishReceiving(id, received: received, keys: keys)
                        logger.notice("job moved to processing after its ingest process stopped", metadata: ["job": .string(id)])
                        settled.append(id)
                    }
                } catch {
                    logger.warning("reaper cannot reach Redis", metadata: ["error": .string("\(error)")])
                    return settled
                }
            }
            guard rows.rows.count == 500, let last = rows.rows.last, let id = last[0], let created = last[3] else { break }
            after = (created, id)
        }
        return settled
    }
}

/// Holds job `jobID`'s upload lease until cancelled, refreshing it every quarter of `lease`.
struct UploadLease {
    let task: Task<Void, Never>

    init(jobID: String, lease: Duration, redis: RedisClient, keys: StreamKeys) {
        let key = keys.uploadLease(jobID), ttl = String(lease.milliseconds)
        task = Task {
            while !Task.isCancelled {
                _ = try? await redis.send(["SET", RedisArgument(key), "1", "PX", RedisArgument(ttl)])
                try? await Task.sleep(for: lease / 4)
            }
        }
    }

    /// Stops refreshing and gives the lease up.
    func release(redis: RedisClient, keys: StreamKeys, jobID: String) async {
        task.cancel()
        _ = try? await redis.send(["DEL", RedisArgument(keys.uploadLease(jobID))])
    }
}
