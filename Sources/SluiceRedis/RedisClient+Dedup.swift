import Sluice

/// First-seen marks for event ids, safe under redelivery.
extension RedisClient {
    static let claimFirstScript = JobScripts.stateTests + """
        local result = {}
        local job = ARGV[1]
        for i = 1, #KEYS do
          local owner = job .. '|' .. ARGV[2] .. ':' .. ARGV[4 + i]
          if redis.call('SET', KEYS[i], owner, 'NX', 'PX', ARGV[3]) then
            result[i] = 1
          else
            local held = redis.call('GET', KEYS[i])
            if held == owner then
              result[i] = 1
            else
              result[i] = 0
              local holder = held and string.match(held, '^([^|]*)|')
              if holder and holder ~= '' and holder ~= job then
                local state = redis.call('HGET', ARGV[4] .. holder, 'state')
                if job_ended(state) then
                  redis.call('SET', KEYS[i], owner, 'PX', ARGV[3])
                  result[i] = 1
                elseif job_receiving(state) then
                  result[i] = 2
                end
              end
            end
          end
        end
        return result
        """

    /// Marks each of `keys` as first seen by position `positions[i]` of chunk `chunkIdentity`
    /// of job `jobID`, unless another chunk or position marked it already, for `ttl`; answers,
    /// per key, whether this chunk position owns the mark. A chunk delivered again (same
    /// identity and positions) owns its marks again, so a redelivery is never mistaken for a
    /// duplicate of itself; the same key twice in one chunk is owned by its first position only.
    ///
    /// A mark held by a job that failed or was cancelled is void: its events were not all
    /// loaded, and uploading them again must load them (what the cancelled job did load, the
    /// warehouse's primary key still refuses, and load counts those as duplicates). A mark held
    /// by another job still being received is ``FirstSeen/pending``: that upload may yet fail,
    /// and its rows go with it, so this copy is neither first nor a duplicate until it ends.
    public func claimFirstSeen(keys: [String], positions: [Int], chunkIdentity: String, jobID: String? = nil,
                               ttl: Duration, streamKeys: StreamKeys = StreamKeys()) async throws -> [FirstSeen] {
        precondition(keys.count == positions.count)
        guard !keys.isEmpty else { return [] }
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.claimFirstScript), RedisArgument(keys.count)]
        arguments += keys.map { RedisArgument($0) }
        arguments.append(RedisArgument(jobID ?? ""))
        arguments.append(RedisArgument(chunkIdentity))
        arguments.append(RedisArgument(max(ttl.milliseconds, 1)))
        arguments.append(RedisArgument(streamKeys.job("")))
        arguments += positions.map { RedisArgument($0) }
        guard let replies = try await send(arguments).array, replies.count == keys.count else {
            throw RedisError(.unexpectedReply, "the first-seen script answered an unexpected shape")
        }
        return replies.map { $0.int == 1 ? .first : $0.int == 2 ? .pending : .duplicate }
    }

    /// What ``claimFirstSeen(keys:positions:chunkIdentity:jobID:ttl:streamKeys:)`` found for a key.
    public enum FirstSeen: Sendable, Equatable {
        /// This chunk position owns the mark: the event is new.
        case first
        /// Another chunk or position owns it: the event is a duplicate.
        case duplicate
        /// Another job still being received owns it: ask again once that upload has ended.
        case pending
    }

    static let peekSeenScript = JobScripts.stateTests + """
        local result = {}
        for i = 1, #KEYS do
          local held = redis.call('GET', KEYS[i])
          result[i] = held and 1 or 0
          local holder = held and string.match(held, '^([^|]*)|')
          if holder and holder ~= '' then
            local state = redis.call('HGET', ARGV[1] .. holder, 'state')
            if job_ended(state) then result[i] = 0 end
          end
        end
        return result
        """

    /// Whether each of `keys` holds a first-seen mark that counts (not one of a failed or
    /// cancelled job), without writing anything (dry runs).
    public func peekSeen(keys: [String], streamKeys: StreamKeys = StreamKeys()) async throws -> [Bool] {
        guard !keys.isEmpty else { return [] }
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.peekSeenScript), RedisArgument(keys.count)]
        arguments += keys.map { RedisArgument($0) }
        arguments.append(RedisArgument(streamKeys.job("")))
        guard let replies = try await send(arguments).array, replies.count == keys.count else {
            throw RedisError(.unexpectedReply, "the first-seen peek answered an unexpected shape")
        }
        return replies.map { $0.int == 1 }
    }
}
