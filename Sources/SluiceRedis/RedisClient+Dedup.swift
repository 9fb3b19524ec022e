/// First-seen marks for event ids, safe under redelivery.
extension RedisClient {
    static let claimFirstScript = """
        local result = {}
        for i = 1, #KEYS do
          local owner = ARGV[1] .. ':' .. ARGV[2 + i]
          if redis.call('SET', KEYS[i], owner, 'NX', 'PX', ARGV[2]) then
            result[i] = 1
          elseif redis.call('GET', KEYS[i]) == owner then
            result[i] = 1
          else
            result[i] = 0
          end
        end
        return result
        """

    /// Marks each of `keys` as first seen by position `positions[i]` of chunk `chunkIdentity`,
    /// unless another chunk or position marked it already, for `ttl`; answers, per key, whether
    /// this chunk position owns the mark. A chunk delivered again (same identity and positions)
    /// owns its marks again, so a redelivery is never mistaken for a duplicate of itself; the
    /// same key twice in one chunk is owned by its first position only.
    public func claimFirstSeen(keys: [String], positions: [Int], chunkIdentity: String, ttl: Duration) async throws -> [Bool] {
        precondition(keys.count == positions.count)
        guard !keys.isEmpty else { return [] }
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.claimFirstScript), RedisArgument(keys.count)]
        arguments += keys.map { RedisArgument($0) }
        arguments.append(RedisArgument(chunkIdentity))
        arguments.append(RedisArgument(max(ttl.milliseconds, 1)))
        arguments += positions.map { RedisArgument($0) }
        guard let replies = try await send(arguments).array, replies.count == keys.count else {
            throw RedisError(.unexpectedReply, "the first-seen script answered an unexpected shape")
        }
        return replies.map { $0.int == 1 }
    }
}
