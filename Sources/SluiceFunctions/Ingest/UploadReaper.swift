import Logging
import ServiceLifecycle
import Sluice
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
    let jobs: JobStore
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
        let page = 500
        var settled: [String] = []
        // Every candidate, a page at a time (keyset on created_at, id): jobs that are rightly
        // processing must not hide newer ones behind a fixed first page.
        var after: (String, String)?
        while true {
            let candidates: [JobStore.OpenJob]
            do {
                candidates = try await jobs.openJobs(olderThan: seconds, after: after, limit: page)
            } catch {
                logger.warning("reaper cannot read the jobs", metadata: ["error": .string("\(error)")])
                return settled
            }
            for job in candidates {
                do {
                    guard try await !jobs.hasUploadLease(job.id) else { continue }
                    let live = try await jobs.live(job.id).status
                    if job.status == .received, live == nil || live == .received {
                        await fail(job.id, "upload_interrupted")
                        logger.warning("upload interrupted: its ingest process stopped before the body ended; job failed",
                                       metadata: ["job": .string(job.id)])
                        settled.append(job.id)
                    } else if job.status == .processing, live == .received, let received = job.received {
                        try await jobs.finishReceivingLive(job.id, received: received)
                        logger.notice("job moved to processing after its ingest process stopped", metadata: ["job": .string(job.id)])
                        settled.append(job.id)
                    }
                } catch {
                    logger.warning("reaper cannot reach Redis", metadata: ["error": .string("\(error)")])
                    return settled
                }
            }
            guard candidates.count == page, let last = candidates.last else { break }
            after = last.position
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
