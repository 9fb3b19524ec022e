import Logging
import Sluice
import SluicePostgres
import SluiceRedis

/// The owner of a job's life: every read and write of the `jobs` table and of the job's Redis
/// hash (state, counters, settlement, the announcement of its end) goes through here. The
/// statuses and their transitions are ``JobStatus`` and ``JobScripts``; this type stores them.
///
/// PostgreSQL holds the job's row (who created it, its format, schema, final counts); Redis
/// holds its live state, which the stages change atomically with their acknowledgements. Redis
/// decides first; the row follows when job-recorder records the announcement of the end.
public struct JobStore: Sendable {
    let pool: PostgresPool
    let redis: RedisClient
    let keys: StreamKeys
    let logger: Logger

    public init(pool: PostgresPool, redis: RedisClient, keys: StreamKeys, logger: Logger) {
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.logger = logger
    }

    /// What is known of a job when its upload starts.
    public struct NewJob: Sendable {
        public var id: String
        public var format: String
        public var contentType: String?
        /// Where notify announces the job's end, besides its configured channels.
        public var callbackURL: String?
        /// The creator's key (``Caller/ownerKey``); `nil` for jobs only `admin` sees.
        public var createdBy: String?
        public var traceID: String?
        /// The dataset its records belong to.
        public var dataset: String

        public init(id: String, format: String, contentType: String? = nil, callbackURL: String? = nil,
                    createdBy: String? = nil, traceID: String? = nil, dataset: String = "events") {
            self.dataset = dataset
            self.id = id
            self.format = format
            self.contentType = contentType
            self.callbackURL = callbackURL
            self.createdBy = createdBy
            self.traceID = traceID
        }
    }

    // MARK: - Receiving

    /// Opens `job` as `received`: its row, then its Redis hash.
    public func open(_ job: NewJob) async throws {
        try await pool.query("""
            INSERT INTO jobs (id, status, format, content_type, counts, callback_url, created_by, dataset)
            VALUES (\(job.id)::uuid, \(JobStatus.received), \(job.format), \(job.contentType.map { String($0.prefix(200)) }), '{}'::jsonb,
                    \(job.callbackURL), \(job.createdBy), \(job.dataset))
            """)
        try await redis.send(["EVAL", RedisArgument(JobScripts.begin), "1", RedisArgument(keys.job(job.id)),
                              RedisArgument(job.traceID ?? "")])
    }

    /// Opens job `id` whose `received` events are all known at once (the test intake): its row
    /// holds the count; ``receivedCommand(_:received:)`` is the Redis side, sent with the chunks.
    public func openWhole(_ id: String, format: String, received: Int) async throws {
        try await pool.query("""
            INSERT INTO jobs (id, status, format, counts) VALUES (\(id)::uuid, \(JobStatus.received), \(format), jsonb_build_object('received', \(received)::bigint))
            """)
    }

    /// The Redis command that records a job's `received` count, for a pipeline of commands.
    public func receivedCommand(_ id: String, received: Int) -> [RedisArgument] {
        ["HSET", RedisArgument(keys.job(id)), "received", RedisArgument(received)]
    }

    /// Records that job `id`'s body ended with `received` records (and its detected `schema`
    /// and size): the row, then Redis, where the job moves to `processing` (or straight to its
    /// end when every event was already accounted for).
    /// - Returns: the job's status in Redis afterwards (`cancelled` if it was cancelled meanwhile).
    @discardableResult
    public func finishReceiving(_ id: String, received: Int, schema: JSONValue? = nil, bytes: Int? = nil) async throws -> JobStatus? {
        try await pool.query("""
            UPDATE jobs SET status = CASE WHEN status = \(JobStatus.received) THEN \(JobStatus.processing) ELSE status END,
                counts = counts || jsonb_build_object('received', \(received)::bigint), schema = COALESCE(\(schema?.serializedString)::jsonb, schema),
                bytes = COALESCE(\(bytes.map(String.init))::bigint, bytes), updated_at = now()
            WHERE id = \(id)::uuid
            """)
        return try await finishReceivingLive(id, received: received)
    }

    /// The Redis half of ``finishReceiving(_:received:schema:bytes:)`` alone (the reaper's
    /// repair when a process died between the two).
    @discardableResult
    func finishReceivingLive(_ id: String, received: Int) async throws -> JobStatus? {
        let state = try await redis.send(["EVAL", RedisArgument(JobScripts.finishReceiving), "2", RedisArgument(keys.job(id)),
                                          RedisArgument(keys.stream("jobs")), RedisArgument(received)]).text
        return state.flatMap(JobStatus.init(rawValue:))
    }

    // MARK: - Ending

    /// Marks job `id` failed with `code`: first in PostgreSQL, where `discard` removes in the
    /// same transaction what was loaded of it (under the row lock the load stage takes, so no
    /// chunk of it is loaded afterwards), then in Redis (the stages drop its remaining chunks,
    /// and its first-seen marks stop counting), now or in the background (``end(_:as:code:)``).
    ///
    /// A job that has already ended in PostgreSQL (cancelled while its upload was still coming,
    /// say) is left as it is, there and in Redis: failing it too would delete the rows a
    /// cancelled job keeps and race the cancel to Redis.
    public func fail(_ id: String, code: String, discard: @escaping @Sendable (PostgresConnection) throws -> Void) async {
        let failed: Bool
        do {
            failed = try await pool.withTransaction { connection in
                let changed = try connection.query("""
                    UPDATE jobs SET status = \(JobStatus.failed), error = \(code), finished_at = now(), updated_at = now()
                    WHERE id = \(id)::uuid AND status IN (\(JobStatus.received), \(JobStatus.processing)) RETURNING 1
                    """).count
                guard changed == 1 else { return false }
                try discard(connection)
                return true
            }
        } catch {
            logger.error("could not mark a job failed", metadata: ["job": .string(id), "error": .string("\(error)")])
            return
        }
        if failed { await end(id, as: .failed, code: code) }
    }

    /// Cancels job `id` if `reader` may see it and it is still open: the row (under the lock
    /// the load stage takes), then Redis.
    /// - Returns: the status before, or `nil` when there is no such job for `reader`.
    public func cancel(_ id: String, by reader: JobReader) async throws -> JobStatus? {
        let previous: JobStatus? = try await pool.withTransaction { connection in
            let current = try connection.query("""
                SELECT status FROM jobs WHERE id = \(id)::uuid AND (\(reader.readsAll)::boolean OR created_by = \(reader.owner)) FOR UPDATE
                """).scalar(JobStatus.self)
            guard let status = current else { return nil }
            if status.isOpen {
                try connection.query("UPDATE jobs SET status = \(JobStatus.cancelled), finished_at = now(), updated_at = now() WHERE id = \(id)::uuid")
            }
            return status
        }
        // PostgreSQL has it cancelled (load drops its chunks from now on, and a second cancel
        // finds it ended): Redis follows, at once or as soon as it takes the write.
        if previous?.isOpen == true { await end(id, as: .cancelled) }
        return previous
    }

    /// Ends the job in Redis (`failed` or `cancelled`) once PostgreSQL has it so: now, or, when
    /// Redis refuses (full, or away: often the very reason an upload failed), in the background
    /// until it takes it, with the stream trigger's outage backoff (100 ms doubling to 5 s). A
    /// job failed in PostgreSQL but still `received` in Redis would make every later copy of
    /// its events wait as `pending`.
    func end(_ id: String, as status: JobStatus, code: String? = nil) async {
        precondition(status == .failed || status == .cancelled)
        let redis = self.redis
        let command: [RedisArgument] = ["EVAL", RedisArgument(JobScripts.end), "2", RedisArgument(keys.job(id)),
                                        RedisArgument(keys.stream("jobs")), RedisArgument(status.rawValue), RedisArgument(code ?? "")]
        var failure: any Error
        do {
            try await redis.send(command)
            return
        } catch {
            failure = error
        }
        var logger = self.logger
        logger[metadataKey: "job"] = .string(id)
        logger[metadataKey: "state"] = .string(status.rawValue)
        Task { [failure, logger] in
            var outage = Backoff(), failure = failure
            while true {
                await outage.wait(after: failure, logger: logger, isStopping: { false })
                do {
                    try await redis.send(command)
                    outage.reset(logger: logger)
                    return
                } catch {
                    failure = error
                }
            }
        }
    }

    /// Records the end of job `id` announced on the jobs stream in its row. A job already ended
    /// keeps its status (an announcement delivered twice, or late, changes nothing).
    public static func recordEnd(_ id: String, status: JobStatus, counts: String, error: String?, finishedAtMilliseconds: String?,
                                 pool: PostgresPool) async throws {
        try await pool.query("""
            UPDATE jobs SET status = \(status), counts = \(counts)::jsonb, error = COALESCE(\(error), error),
                finished_at = COALESCE(to_timestamp(\(finishedAtMilliseconds)::bigint / 1000.0), finished_at, now()), updated_at = now()
            WHERE id = \(id)::uuid AND (status IN (\(JobStatus.received), \(JobStatus.processing)) OR status = \(status))
            """)
    }

    /// Job `id`'s status, read under a share lock inside the caller's transaction: a chunk is
    /// loaded only while its job is open, and failing or cancelling the job waits for the load.
    public static func statusForLoading(_ id: String, on connection: PostgresConnection) throws -> JobStatus? {
        // Through the owner's function: the lock needs a privilege load's role does not hold.
        try connection.query("SELECT job_status_for_loading(\(id)::uuid)").scalar(JobStatus?.self) ?? nil
    }

    /// Where job `id`'s end is to be called back, if its upload asked.
    public static func callbackURL(of id: String, on connection: PostgresConnection) throws -> String? {
        try connection.query("SELECT callback_url FROM jobs WHERE id = \(id)::uuid").scalar(String?.self) ?? nil
    }

    /// The callback addresses of jobs `ids` (jobs without one are left out).
    public static func callbackURLs(of ids: Set<String>, pool: PostgresPool) async throws -> [String: String] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await pool.query("SELECT id::text, callback_url FROM jobs WHERE id = ANY(\(Array(ids))::uuid[]) AND callback_url IS NOT NULL")
        return Dictionary(try rows.decode((String, String).self), uniquingKeysWith: { first, _ in first })
    }

    // MARK: - Live state

    /// A job's hash in Redis.
    public struct Live: Sendable {
        /// `nil` when Redis does not know the job (never opened there, or expired).
        public var status: JobStatus?
        /// The hash's fields: `received`, the counters, `error`, `trace`.
        public var fields: [String: String]

        /// The counter `name` (0 when absent).
        public func count(_ name: String) -> Int { Int(fields[name] ?? "") ?? 0 }
    }

    /// Job `id`'s live state.
    public func live(_ id: String) async throws -> Live {
        let reply = try await redis.send(["HGETALL", RedisArgument(keys.job(id))])
        var fields: [String: String] = [:]
        let items = reply.array ?? []
        var index = 0
        while index + 1 < items.count {
            if let name = items[index].text, let value = items[index + 1].text { fields[name] = value }
            index += 2
        }
        return Live(status: fields["state"].flatMap(JobStatus.init(rawValue:)), fields: fields)
    }

    // MARK: - Dead letters

    /// Moves dead letter `entryID` of `function` back onto `input` with `fields`. A job that
    /// failed only because of dead letters is reopened: its row first (the load stage must find
    /// it open when the chunk arrives), then, atomically with the move, its Redis hash.
    /// - Returns: false when the entry was no longer there.
    public func redrive(function: String, entryID: String, to input: String, fields: [(String, [UInt8])],
                        jobID: String?, events: Int) async throws -> Bool {
        if let jobID {
            try await pool.query("""
                UPDATE jobs SET status = \(JobStatus.processing), error = NULL, finished_at = NULL, updated_at = now()
                WHERE id = \(jobID)::uuid AND status = \(JobStatus.failed) AND error = 'dead_lettered'
                """)
        }
        var arguments: [RedisArgument] = [
            "EVAL", RedisArgument(JobScripts.redrive), "3", RedisArgument(keys.deadLetters(function)), RedisArgument(input),
            RedisArgument(keys.job(jobID ?? "-")), RedisArgument(entryID), RedisArgument(events), RedisArgument(function),
            RedisArgument(jobID == nil ? "0" : "1"),
        ]
        for (name, value) in fields {
            arguments.append(RedisArgument(name))
            arguments.append(RedisArgument(value))
        }
        return try await redis.send(arguments).int == 1
    }

    // MARK: - Reading

    /// A row of `jobs` as ``columns`` reads it.
    struct Row {
        var id: String, status: JobStatus, format: String?, counts: String, error: String?, schema: String?
        var contentType: String?, bytes: Int64?, createdAt: String, updatedAt: String, finishedAt: String?, dataset: String

        init(_ row: PostgresRow) throws {
            (id, status, format, counts, error, schema, contentType, bytes, createdAt, updatedAt, finishedAt, dataset) = try row.decode(
                (String, JobStatus, String?, String, String?, String?, String?, Int64?, String, String, String?, String).self)
        }
    }

    static let columns: PostgresQuery = """
        id::text, status, format, counts::text, error, schema::text, content_type, bytes::text,
        \(SQLText.iso("created_at")), \(SQLText.iso("updated_at")), \(SQLText.iso("finished_at")), COALESCE(dataset, 'events')
        """

    /// Job `id` as `reader` may see it, with its live counters; `nil` when there is none
    /// (someone else's job is not there either, so that ids reveal nothing).
    public func job(_ id: String, for reader: JobReader) async throws -> JSONValue? {
        let rows = try await pool.query("""
            SELECT \(Self.columns) FROM jobs WHERE id = \(id)::uuid AND (\(reader.readsAll)::boolean OR created_by = \(reader.owner))
            """)
        guard let row = try rows.first.map(Row.init) else { return nil }
        let live = try? await live(id)
        return Self.describe(row, live: live?.status == nil ? nil : live?.fields)
    }

    /// A page of the jobs `reader` may see, newest first, after job `before`.
    /// - Returns: the jobs and the id to ask the next page `before` (nil on the last page).
    public func list(status: JobStatus?, before: String?, limit: Int, for reader: JobReader) async throws -> (jobs: [JSONValue], next: String?) {
        let rows = try await pool.query("""
            SELECT \(Self.columns) FROM jobs
            WHERE (\(status)::text IS NULL OR status = \(status))
              AND (\(before)::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM jobs WHERE id = \(before)::uuid))
              AND (\(reader.readsAll)::boolean OR created_by = \(reader.owner))
            ORDER BY created_at DESC, id DESC
            LIMIT \(limit)::integer
            """)
        let page = try rows.map(Row.init)
        var jobs: [JSONValue] = []
        for row in page {
            var live: [String: String]?
            if row.status.isOpen, let state = try? await self.live(row.id), state.status != nil {
                live = state.fields
            }
            jobs.append(Self.describe(row, live: live))
        }
        return (jobs, page.count == limit ? page.last?.id : nil)
    }

    /// A job as the API answers it: the row, with the live state and counters from Redis
    /// when it still holds them.
    static func describe(_ row: Row, live: [String: String]?) -> JSONValue {
        let stored = (try? JSONParser().parse(Array(row.counts.utf8))) ?? .object([:])
        func count(_ liveName: String, _ storedName: String) -> JSONValue {
            if let live, let value = live[liveName].flatMap(Int64.init) { return .int(value) }
            if live != nil, liveName != "received" { return .int(0) }
            return stored[storedName] ?? .int(0)
        }
        var counts: JSONObject = [
            "received": count("received", "received"), "loaded": count("loaded", "loaded"),
            "quarantined": count("quarantined", "quarantined"), "stale": count("dropped.stale", "stale"),
            "duplicate": count("dropped.duplicate", "duplicate"), "no_consent": count("dropped.no_consent", "no_consent"),
            "geo_restricted": count("dropped.geo_restricted", "geo_restricted"),
            "failed": count("dead_lettered", "failed"), "cancelled": count("dropped.cancelled", "cancelled"),
            "dropped": live.map { .int(JobCounters.otherDrops($0)) } ?? stored["dropped"] ?? .int(0),
        ]
        // Events functions added by forwarding several in place of one: the job waits for them.
        let added = count("added", "added")
        if added != .int(0) { counts["added"] = added }
        var status = row.status
        if let state = live?["state"].flatMap(JobStatus.init(rawValue:)) {
            // Redis decides first; the row follows when the jobs stream is recorded.
            if status.isOpen || state == status { status = state }
        }
        if case .int(let received)? = counts["received"] {
            let settled = JobCounters.reported.filter { $0 != "received" }
                .reduce(Int64(0)) { sum, name in if case .int(let v)? = counts[name] { sum + v } else { sum } }
            counts["in_flight"] = .int(max(0, received + (added.intValue ?? 0) - settled))
        }
        var object: JSONObject = [
            "id": .string(row.id), "status": .string(status.rawValue), "dataset": .string(row.dataset),
            "format": row.format.map(JSONValue.string) ?? .null,
            "counts": .object(counts), "created_at": .string(row.createdAt), "updated_at": .string(row.updatedAt),
            "finished_at": row.finishedAt.map(JSONValue.string) ?? .null,
        ]
        // The drops counted together as `dropped`, by reason (a user function's reasons).
        if let live {
            var drops = JSONObject()
            for (reason, count) in JobCounters.dropsByReason(live).sorted(by: { $0.key < $1.key }) { drops[reason] = .int(count) }
            object["drops"] = .object(drops)
        } else {
            object["drops"] = stored["drops"]?.objectValue.map(JSONValue.object) ?? .object([:])
        }
        if let error = live?["error"] ?? row.error { object["error"] = .string(error) }
        if let schema = row.schema.flatMap({ try? JSONParser().parse(Array($0.utf8)) }) { object["schema"] = schema }
        if let type = row.contentType { object["content_type"] = .string(type) }
        if let bytes = row.bytes { object["bytes"] = .int(bytes) }
        return .object(object)
    }

    // MARK: - Reaping

    /// A job still open in PostgreSQL, for the upload reaper.
    struct OpenJob: Sendable {
        var id: String
        var status: JobStatus
        /// The final `received` count, once the row has it.
        var received: Int?
        /// The keyset position of the row (`created_at` with microseconds, and the id).
        var position: (String, String)
    }

    /// Up to `limit` open jobs created more than `seconds` ago, oldest first, after `position`.
    func openJobs(olderThan seconds: Double, after position: (String, String)?, limit: Int) async throws -> [OpenJob] {
        let rows = try await pool.query("""
            SELECT id::text, status, counts->>'received',
                   to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM jobs
            WHERE status IN (\(JobStatus.received), \(JobStatus.processing)) AND created_at < now() - make_interval(secs => \(seconds)::float8)
              AND (\(position?.0)::timestamptz IS NULL OR (created_at, id) > (\(position?.0)::timestamptz, \(position?.1)::uuid))
            ORDER BY created_at, id LIMIT \(limit)::integer
            """)
        return try rows.decode((String, JobStatus, Int?, String).self).map { id, status, received, created in
            OpenJob(id: id, status: status, received: received, position: (created, id))
        }
    }

    /// Whether job `id`'s upload lease is held (its ingest process is alive).
    func hasUploadLease(_ id: String) async throws -> Bool {
        try await redis.send(["EXISTS", RedisArgument(keys.uploadLease(id))]).int == 1
    }
}

/// A job's status is stored as its name.
extension JobStatus: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { rawValue }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let status = JobStatus(rawValue: text) else { throw .malformed }
        self = status
    }
}
