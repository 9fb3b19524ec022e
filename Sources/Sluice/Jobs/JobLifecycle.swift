/// A job's status. A job is `received` while its body arrives, `processing` once the body has
/// ended and its events flow through the stages, and then ends once: `completed` (every event
/// accounted for), `failed` (refused, interrupted, or some events dead-lettered) or `cancelled`.
///
/// The transitions, written once here and in ``JobScripts``:
/// - `received` → `processing` when the body ends (``JobScripts/finishReceiving``);
/// - `processing` → `completed` | `failed` when the last event is accounted for (`settle`);
/// - `received` | `processing` → `failed` | `cancelled` by ingest, the reaper or the API (``JobScripts/end``);
/// - `failed` (dead letters only) → `processing` when the dead letters are redriven (``JobScripts/redrive``).
public enum JobStatus: String, Sendable, CaseIterable, Codable {
    case received, processing, completed, failed, cancelled

    /// Whether the job may still change: `received` or `processing`.
    public var isOpen: Bool { self == .received || self == .processing }

    /// The statuses a job ends in.
    public static let final: [JobStatus] = [.completed, .failed, .cancelled]

    /// Every status's name, in order (the API's enum).
    public static let names: [String] = allCases.map(\.rawValue)
}

/// The job counters the API names. Every `dropped.REASON` counter is a terminal state: the
/// reasons listed here have a count of their own, any other (a user function's `filtered`,
/// `job_failed`) adds to `dropped`. The settle script and the job API both read this list.
public enum JobCounters {
    public static let namedDrops = ["stale", "duplicate", "no_consent", "geo_restricted", "cancelled"]

    /// The counts a job reports, in the order notifications list them.
    public static let reported = ["received", "loaded", "quarantined", "stale", "duplicate", "no_consent", "geo_restricted",
                                  "dropped", "failed", "cancelled"]

    /// Each reason without a count of its own (a user function's `low_score`, say) and its
    /// count, in a job hash's fields.
    public static func dropsByReason(_ fields: [String: String]) -> [String: Int64] {
        var drops: [String: Int64] = [:]
        for (field, value) in fields where field.hasPrefix("dropped.") && !namedDrops.contains(String(field.dropFirst(8))) {
            drops[String(field.dropFirst(8))] = Int64(value) ?? 0
        }
        return drops
    }

    /// Events dropped for a reason without a count of its own, in a job hash's fields.
    public static func otherDrops(_ fields: [String: String]) -> Int64 {
        var total: Int64 = 0
        for (field, value) in fields where field.hasPrefix("dropped.") && !namedDrops.contains(String(field.dropFirst(8))) {
            total += Int64(value) ?? 0
        }
        return total
    }
}

/// A job's live state in Redis: the hash `{sluice}:job:ID` holds `state` (a ``JobStatus``),
/// `received` (final once the body has ended) and the counters the stages add as they
/// acknowledge chunks (`loaded`, `quarantined`, `dropped.REASON`, `dead_lettered`, …).
///
/// Every change of state and the settling of a job happen inside Lua scripts, so that the
/// moment a job's last event is accounted for is decided exactly once, atomically with the
/// acknowledgement that accounted for it. Each final state is announced once on the `jobs`
/// stream (an entry in the chunk format holding one event: `job_id`, `status`, `counts`,
/// `finished_at`, and `error` for failures).
///
/// The Redis adapter's delivery and first-seen scripts include ``functions`` and call them; they
/// name no status themselves.
public enum JobScripts {
    /// The Lua tests of a job's `state` alone (for scripts that need no more): `job_ended`,
    /// `job_receiving`, `job_drop_reason` (see ``functions``).
    public static let stateTests = """
        local function job_ended(state) return state == 'failed' or state == 'cancelled' end
        local function job_receiving(state) return state == 'received' end
        local function job_drop_reason(state)
          if state == 'cancelled' then return 'dropped.cancelled' end
          if state == 'failed' then return 'dropped.job_failed' end
          return nil
        end

        """

    /// ``stateTests`` and Lua functions over a job hash:
    /// - `job_ended(state)`: the state is `failed` or `cancelled` (its chunks are dropped, its
    ///   first-seen marks void);
    /// - `job_receiving(state)`: the body is still arriving;
    /// - `job_drop_reason(state)`: the counter a chunk of an ended job adds to, or nil;
    /// - `settle(job, stream)`: if the job is `processing`, its `received` count is known and
    ///   every event is in a terminal state, marks it `completed` (or `failed` when some were
    ///   dead-lettered) and announces it on `stream`. Returns 1 when it settled the job.
    public static let functions = stateTests + """
        -- Every `dropped.REASON` counter is a terminal state (see JobCounters).
        local named = {\(JobCounters.namedDrops.map { "\($0) = true" }.joined(separator: ", "))}
        -- The job's counts, its `received` field (nil until the body has ended) and its trace id.
        local function job_counts(job)
          local all = redis.call('HGETALL', job)
          local c = {received = 0, loaded = 0, quarantined = 0, stale = 0, duplicate = 0, no_consent = 0,
                     geo_restricted = 0, dropped = 0, failed = 0, cancelled = 0, added = 0, drops = {}}
          local received, trace = nil, nil
          for i = 1, #all, 2 do
            local k, n = all[i], tonumber(all[i + 1]) or 0
            if k == 'received' then received = all[i + 1]; c.received = n
            elseif k == 'trace' then trace = all[i + 1]
            elseif k == 'loaded' or k == 'quarantined' or k == 'added' then c[k] = n
            elseif k == 'dead_lettered' then c.failed = n
            elseif string.sub(k, 1, 8) == 'dropped.' then
              local reason = string.sub(k, 9)
              if named[reason] then c[reason] = n else c.dropped = c.dropped + n; c.drops[reason] = n end
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
          -- `added`: events a function forwarded beyond one in place of one (a fan-out).
          if c.loaded + c.quarantined + c.stale + c.duplicate + c.no_consent + c.geo_restricted + c.dropped + c.failed < c.received + c.added then return 0 end
          if c.failed > 0 then
            announce(job, stream, 'failed', 'dead_lettered')
          else
            announce(job, stream, 'completed', nil)
          end
          return 1
        end

        """

    /// KEYS: job hash. ARGV: the upload's trace id or ''. Opens the job as `received`.
    public static let begin = """
        redis.call('HSET', KEYS[1], 'state', 'received')
        if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'trace', ARGV[1]) end
        return 1
        """

    /// KEYS: job hash, jobs stream. ARGV: received. Ends the `received` phase.
    public static let finishReceiving = functions + """
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
    public static let redrive = """
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
    public static let end = functions + """
        local state = redis.call('HGET', KEYS[1], 'state')
        if state ~= false and state ~= 'received' and state ~= 'processing' then return state end
        local err = nil
        if ARGV[2] ~= '' then err = ARGV[2] end
        announce(KEYS[1], KEYS[2], ARGV[1], err)
        return state or ''
        """
}
