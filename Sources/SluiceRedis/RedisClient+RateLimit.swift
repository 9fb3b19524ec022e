import Sluice

/// Token buckets held in Redis, so that every gateway replica spends from one budget.
extension RedisClient {
    /// KEYS[1] the bucket; ARGV: rate (tokens per second), burst (capacity). Time is Redis's
    /// own clock (`TIME`), the same for every replica. Answers {allowed, remaining, retry
    /// after ms, ms until full}.
    static let tokenBucketScript = """
        local rate = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
        local tokens = tonumber(held[1]) or burst
        local at = tonumber(held[2]) or now
        if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
        local allowed = 0
        local retry = 0
        if tokens >= 1 then
          tokens = tokens - 1
          allowed = 1
        else
          retry = math.ceil((1 - tokens) * 1000 / rate)
        end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
        local full = math.ceil((burst - tokens) * 1000 / rate)
        redis.call('PEXPIRE', KEYS[1], full + 1000)
        return {allowed, math.floor(tokens), retry, full}
        """

    /// The answer of one take from a bucket.
    public struct RateLimitDecision: Sendable, Equatable {
        public var allowed: Bool
        /// Whole tokens left after this request.
        public var remaining: Int
        /// When a refused request may try again.
        public var retryAfter: Duration
        /// When the bucket is full again.
        public var resetAfter: Duration
    }

    /// Takes one token from the bucket `key` that refills at `rate` per second up to `burst`.
    public func takeToken(key: String, rate: Double, burst: Int) async throws -> RateLimitDecision {
        let reply = try await send(["EVAL", RedisArgument(Self.tokenBucketScript), 1, RedisArgument(key),
                                    RedisArgument(String(rate)), RedisArgument(burst)])
        guard let values = reply.array?.compactMap(\.int), values.count == 4 else {
            throw RedisError(.unexpectedReply, "the token bucket answered an unexpected shape")
        }
        return RateLimitDecision(allowed: values[0] == 1, remaining: Int(values[1]),
                                 retryAfter: .milliseconds(values[2]), resetAfter: .milliseconds(values[3]))
    }
}
