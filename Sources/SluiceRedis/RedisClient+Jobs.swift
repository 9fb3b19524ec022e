import Sluice

/// A job's live state in Redis: the hash `{sluice}:job:ID` holds `state` (`received` while
/// the body arrives, then `processing`, then `completed`, `failed` or `cancelled`),
/// `received` (final once the body has ended) and the counters the stages add as they
/// acknowledge chunks (`loaded`, `quarantined`, `dropped.REASON`, `dead_lettered`, …).
///
/// Every change of state and the settling of a job happen inside Lua scripts, so that the
/// moment a job's last event is accounted for is decided exactly once, atomically with the
/// acknowledgement that accounted for it. Each final state is announced once on the `jobs`
/// stream (an entry in the chunk format holding one event: `job_id`, `status`, `counts`,
/// `finished_at`, and `error` for failures).
enum JobScripts {
    /// Defines `settle(job, stream)`: if the job is `processing`, its `received` count is known
    /// and every event is in a terminal state, marks it `completed` (or `failed` when some were
    /// dead-lettered) and announces it. Returns 1 when it settled the job.
    static let settle = """
        local function job_counts(job)
          local v = redis.call('HMGET', job, 'received', 'loaded', 'quarantined', 'dropped.stale',
            'dropped.duplicate', 'dropped.no_consent', 'dead_lettered', 'dropped.cancelled')
          local c = {}
          for i = 1, 8 do c[i] = tonumber(v[i]) or 0 end
          return {received = c[1], loaded = c[2], quarantined = c[3], stale = c[4], duplicate = c[5],
                  no_consent = c[6], failed = c[7], cancelled = c[8]}, v[1]
        end
        local function announce(job, stream, status, err)
          local t = redis.call('TIME')
          local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          redis.call('HSET', job, 'state', status, 'finished', ms)
          if err then redis.call('HSET', job, 'error', err) end
          redis.call('EXPIRE', job, 1209600)
          local counts = job_counts(job)
          local event = {job_id = string.match(job, ':job:(.+)$'), status = status, counts = counts, finished_at = ms}
          if err then event['error'] = err end
          redis.call('XADD', stream, '*', 'v', '1', 'n', '1', 'events', '[' .. cjson.encode(event) .. ']')
        end
        local function settle(job, stream)
          if redis.call('HGET', job, 'state') ~= 'processing' then return 0 end
          local c, received = job_counts(job)
          if not received then return 0 end
          if c.loaded + c.quarantined + c.stale + c.duplicate + c.no_consent + c.failed < c.received then return 0 end
          if c.failed > 0 then
            announce(job, stream, 'failed', 'dead_lettered')
          else
            announce(job, stream, 'completed', nil)
          end
          return 1
        end

        """

    /// KEYS: job hash, jobs stream. ARGV: received. Ends the `received` phase.
    static let finishReceiving = settle + """
        local state = redis.call('HGET', KEYS[1], 'state')
        if state ~= 'received' then return state or '' end
        redis.call('HSET', KEYS[1], 'state', 'processing', 'received', ARGV[1])
        settle(KEYS[1], KEYS[2])
        return redis.call('HGET', KEYS[1], 'state')
        """

    /// KEYS: job hash, jobs stream. ARGV: final state (`failed`/`cancelled`), error code or ''.
    /// Returns the state before (`''` for an unknown job); changes it only from `received` or
    /// `processing`.
    static let end = settle + """
        local state = redis.call('HGET', KEYS[1], 'state')
        if state ~= false and state ~= 'received' and state ~= 'processing' then return state end
        local err = nil
        if ARGV[2] ~= '' then err = ARGV[2] end
        announce(KEYS[1], KEYS[2], ARGV[1], err)
        return state or ''
        """
}

extension RedisClient {
    /// Opens job `jobID` in state `received`.
    public func beginJob(_ jobID: String, keys: StreamKeys = StreamKeys()) async throws {
        _ = try await send(["HSET", RedisArgument(keys.job(jobID)), "state", "received"])
    }

    /// Records that the body held `received` records and moves the job to `processing` (or
    /// straight to its final state when everything was already accounted for).
    /// - Returns: the job's state afterwards (`cancelled` if it was cancelled meanwhile).
    @discardableResult
    public func finishReceiving(_ jobID: String, received: Int, keys: StreamKeys = StreamKeys()) async throws -> String {
        try await send(["EVAL", RedisArgument(JobScripts.finishReceiving), "2", RedisArgument(keys.job(jobID)),
                        RedisArgument(keys.stream("jobs")), RedisArgument(received)]).text ?? ""
    }

    /// Ends job `jobID` as `failed` (with `code`) or `cancelled` unless it already ended, and
    /// announces it on the jobs stream.
    /// - Returns: the state before: `received` or `processing` when this call ended it, a final
    ///   state when the job had already ended, `""` for a job Redis does not know.
    @discardableResult
    public func endJob(_ jobID: String, as state: String, code: String? = nil, keys: StreamKeys = StreamKeys()) async throws -> String {
        precondition(state == "failed" || state == "cancelled")
        return try await send(["EVAL", RedisArgument(JobScripts.end), "2", RedisArgument(keys.job(jobID)),
                               RedisArgument(keys.stream("jobs")), RedisArgument(state), RedisArgument(code ?? "")]).text ?? ""
    }

    /// The job hash: its `state` (nil when Redis does not know the job) and its counters.
    public func jobState(_ jobID: String, keys: StreamKeys = StreamKeys()) async throws -> (state: String?, fields: [String: String]) {
        let reply = try await send(["HGETALL", RedisArgument(keys.job(jobID))])
        var fields: [String: String] = [:]
        let items = reply.array ?? []
        var index = 0
        while index + 1 < items.count {
            if let name = items[index].text, let value = items[index + 1].text { fields[name] = value }
            index += 2
        }
        return (fields["state"], fields)
    }
}
