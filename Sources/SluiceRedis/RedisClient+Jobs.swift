import Sluice

/// The job counters the API names. Every `dropped.REASON` counter is a terminal state: the
/// reasons listed here have a count of their own, any other (a user function's `filtered`,
/// `job_failed`) adds to `dropped`. The settle script and the job API both read this list.
public enum JobCounters {
    public static let namedDrops = ["stale", "duplicate", "no_consent", "geo_restricted", "cancelled"]

    /// Events dropped for a reason without a count of its own, in a job hash's fields.
    public static func otherDrops(_ fields: [String: String]) -> Int64 {
        var total: Int64 = 0
        for (field, value) in fields where field.hasPrefix("dropped.") && !namedDrops.contains(String(field.dropFirst(8))) {
            total += Int64(value) ?? 0
        }
        return total
    }
}

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
        -- Every `dropped.REASON` counter is a terminal state (see JobCounters).
        local named = {\(JobCounters.namedDrops.map { "\($0) = true" }.joined(separator: ", "))}
        -- The job's counts, its `received` field (nil until the body has ended) and its trace id.
        local function job_counts(job)
          local all = redis.call('HGETALL', job)
          local c = {received = 0, loaded = 0, quarantined = 0, stale = 0, duplicate = 0, no_consent = 0,
                     geo_restricted = 0, dropped = 0, failed = 0, cancelled = 0}
          local received, trace = nil, nil
          for i = 1, #all, 2 do
            local k, n = all[i], tonumber(all[i + 1]) or 0
            if k == 'received' then received = all[i + 1]; c.received = n
            elseif k == 'trace' then trace = all[i + 1]
            elseif k == 'loaded' or k == 'quarantined' then c[k] = n
            elseif k == 'dead_lettered' then c.failed = n
            elseif string.sub(k, 1, 8) == 'dropped.' then
              local reason = string.sub(k, 9)
              if named[reason] then c[reason] = n else c.dropped = c.dropped + n end
            end
          end
          return c, received, trace
        end
        local function announce(job, stream, status, err)
          local t = redis.call('TIME')
          local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          redis.call('HSET', job, 'state', status, 'finished', ms)
          if err then redis.call('HSET', job, 'error', err) end
          redis.call('EXPIRE', job, 1209600)
          local counts, _, trace = job_counts(job)
          local event = {job_id = string.match(job, ':job:(.+)$'), status = status, counts = counts, finished_at = ms}
          if err then event['error'] = err end
          -- The upload's trace id follows the announcement to job-recorder and notify. No `job`
          -- field: the entry is about the job, not a chunk of it, and must not be dropped with it.
          local fields = {'v', '1', 'n', '1'}
          if trace then fields[#fields + 1] = 'trace'; fields[#fields + 1] = trace end
          fields[#fields + 1] = 'events'; fields[#fields + 1] = '[' .. cjson.encode(event) .. ']'
          redis.call('XADD', stream, '*', unpack(fields))
        end
        local function settle(job, stream)
          if redis.call('HGET', job, 'state') ~= 'processing' then return 0 end
          local c, received = job_counts(job)
          if not received then return 0 end
          if c.loaded + c.quarantined + c.stale + c.duplicate + c.no_consent + c.geo_restricted + c.dropped + c.failed < c.received then return 0 end
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

    /// KEYS: dead-letter stream, input stream, job hash (or any key when the chunk has no job).
    /// ARGV: entry id, events in the chunk, function, has-job flag, then the fields to append.
    /// Moves the dead letter back to the input and takes its events out of `dead_lettered`;
    /// a job that had failed only because of dead letters is `processing` again. Returns 1 when
    /// it moved the entry, 0 when the entry was gone (moved by someone else).
    static let redrive = """
        if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
        local args = {}
        for f = 5, #ARGV do args[f - 4] = ARGV[f] end
        redis.call('XADD', KEYS[2], '*', unpack(args))
        if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
          local n = tonumber(ARGV[2])
          redis.call('HINCRBY', KEYS[3], 'dead_lettered', -n)
          redis.call('HINCRBY', KEYS[3], 'fn.' .. ARGV[3] .. '.dead_lettered', -n)
          if redis.call('HGET', KEYS[3], 'state') == 'failed' and redis.call('HGET', KEYS[3], 'error') == 'dead_lettered' then
            redis.call('HSET', KEYS[3], 'state', 'processing')
            redis.call('HDEL', KEYS[3], 'error', 'finished')
            redis.call('PERSIST', KEYS[3])
          end
        end
        return 1
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
    /// Opens job `jobID` in state `received`, remembering the upload's trace id for the
    /// announcement of its end.
    public func beginJob(_ jobID: String, traceID: String? = nil, keys: StreamKeys = StreamKeys()) async throws {
        var arguments: [RedisArgument] = ["HSET", RedisArgument(keys.job(jobID)), "state", "received"]
        if let traceID { arguments += ["trace", RedisArgument(traceID)] }
        _ = try await send(arguments)
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

    /// Moves dead letter `id` of `function` back onto `input` with `fields`, atomically, and
    /// reopens its job (`jobID`, `events` in the chunk) when dead letters alone had failed it.
    /// - Returns: false when the entry was no longer there.
    public func redrive(function: String, id: String, to input: String, fields: [(String, [UInt8])],
                        jobID: String?, events: Int, keys: StreamKeys = StreamKeys()) async throws -> Bool {
        var arguments: [RedisArgument] = [
            "EVAL", RedisArgument(JobScripts.redrive), "3", RedisArgument(keys.deadLetters(function)), RedisArgument(input),
            RedisArgument(keys.job(jobID ?? "-")), RedisArgument(id), RedisArgument(events), RedisArgument(function),
            RedisArgument(jobID == nil ? "0" : "1"),
        ]
        for (name, value) in fields {
            arguments.append(RedisArgument(name))
            arguments.append(RedisArgument(value))
        }
        return try await send(arguments).int == 1
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
