/// The atomic steps of delivery. Each is one Lua script, which Redis runs as atomically as a
/// `MULTI`/`EXEC` block, with one difference that matters: the script acknowledges the input
/// first and writes the outputs only if that acknowledgement took effect. A consumer that lost
/// its entry to `XAUTOCLAIM` (it was too slow) therefore cannot forward it a second time.
extension RedisClient {
    static let forwardAndAckScript = """
        local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
        if acked == 0 then return 0 end
        local i = 3
        local counters = tonumber(ARGV[i]); i = i + 1
        for c = 1, counters do
          redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2
        end
        for k = 3, #KEYS do
          local n = tonumber(ARGV[i]); i = i + 1
          local args = {}
          for f = 1, n * 2 do args[f] = ARGV[i]; i = i + 1 end
          redis.call('XADD', KEYS[k], '*', unpack(args))
        end
        return 1
        """

    /// One entry to append as part of an atomic step.
    public struct Append: Sendable {
        public var stream: String
        public var fields: [(String, [UInt8])]
        public init(stream: String, fields: [(String, [UInt8])]) {
            self.stream = stream
            self.fields = fields
        }
    }

    /// Acknowledges entry `id` of `stream` for `group` and, only if it was still pending,
    /// appends `appends` and adds `counters` to the hash `counterKey`, all at once.
    /// - Returns: `false` when the entry was no longer pending (nothing was written).
    public func acknowledge(
        stream: String, group: String, id: String,
        appends: [Append], counterKey: String, counters: [(String, Int)]
    ) async throws -> Bool {
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.forwardAndAckScript), RedisArgument(2 + appends.count)]
        arguments.append(RedisArgument(stream))
        arguments.append(RedisArgument(counterKey))
        for append in appends { arguments.append(RedisArgument(append.stream)) }
        arguments.append(RedisArgument(group))
        arguments.append(RedisArgument(id))
        arguments.append(RedisArgument(counters.count))
        for (field, increment) in counters {
            arguments.append(RedisArgument(field))
            arguments.append(RedisArgument(increment))
        }
        for append in appends {
            arguments.append(RedisArgument(append.fields.count))
            for (name, value) in append.fields {
                arguments.append(RedisArgument(name))
                arguments.append(RedisArgument(value))
            }
        }
        return try await send(arguments).int == 1
    }

    static let moveScript = """
        local removed = redis.call('XDEL', KEYS[1], ARGV[1])
        if removed == 0 then return 0 end
        local args = {}
        for f = 2, #ARGV do args[f - 1] = ARGV[f] end
        redis.call('XADD', KEYS[2], '*', unpack(args))
        return 1
        """

    /// Deletes entry `id` from `from` and, only if it was there, appends `fields` to `to`,
    /// atomically (used to redrive dead letters without losing or doubling one).
    public func move(from: String, id: String, to: String, fields: [(String, [UInt8])]) async throws -> Bool {
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.moveScript), "2", RedisArgument(from), RedisArgument(to), RedisArgument(id)]
        for (name, value) in fields {
            arguments.append(RedisArgument(name))
            arguments.append(RedisArgument(value))
        }
        return try await send(arguments).int == 1
    }
}
