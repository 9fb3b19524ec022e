import Sluice

/// The atomic steps of delivery. Each is one Lua script, which Redis runs as atomically as a
/// `MULTI`/`EXEC` block, with one difference that matters: the script acknowledges the input
/// first and writes the outputs only if that acknowledgement took effect. A consumer that lost
/// its entry to `XAUTOCLAIM` (it was too slow) therefore cannot forward it a second time.
extension RedisClient {
    static let forwardAndAckScript = JobScripts.functions + """
        local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
        if acked == 0 then return 0 end
        local ended = job_drop_reason(redis.call('HGET', KEYS[2], 'state'))
        if ARGV[4] == '1' and ended then
          redis.call('HINCRBY', KEYS[2], ended, ARGV[3])
          return 2
        end
        local i = 5
        local counters = tonumber(ARGV[i]); i = i + 1
        for c = 1, counters do
          redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2
        end
        for k = 4, #KEYS do
          local maxlen = ARGV[i]; i = i + 1
          local n = tonumber(ARGV[i]); i = i + 1
          local args = {}
          for f = 1, n * 2 do args[f] = ARGV[i]; i = i + 1 end
          if maxlen == '' then
            redis.call('XADD', KEYS[k], '*', unpack(args))
          else
            redis.call('XADD', KEYS[k], 'MAXLEN', maxlen, '*', unpack(args))
          end
        end
        if counters > 0 then settle(KEYS[2], KEYS[3]) end
        return 1
        """

    /// One entry to append as part of an atomic step.
    public struct Append: Sendable {
        public var stream: String
        public var fields: [(String, [UInt8])]
        /// When set, the stream is trimmed to this many entries (exactly) by the append.
        public var maxLength: Int?
        public init(stream: String, fields: [(String, [UInt8])], maxLength: Int? = nil) {
            self.stream = stream
            self.fields = fields
            self.maxLength = maxLength
        }
    }

    /// What ``acknowledge(stream:group:id:appends:counterKey:counters:events:honourJobState:jobEvents:)`` did.
    public enum Acknowledgement: Sendable, Equatable {
        /// The entry was no longer pending: nothing was written.
        case alreadyAcknowledged
        /// Acknowledged; the outputs and counters were written.
        case written
        /// Acknowledged; the job was cancelled or had failed, so its `events` were counted as
        /// dropped (`dropped.cancelled` / `dropped.job_failed`) and nothing was forwarded.
        case droppedForJob
    }

    /// Acknowledges entry `id` of `stream` for `group` and, only if it was still pending,
    /// appends `appends` and adds `counters` to the job hash `counterKey`, all at once. When
    /// that accounts for the job's last event, the job is settled (``JobScripts``) and announced
    /// on `jobEvents`.
    ///
    /// With `honourJobState`, a chunk of a job that has ended writes nothing but its `events`
    /// count as dropped.
    public func acknowledge(
        stream: String, group: String, id: String,
        appends: [Append], counterKey: String, counters: [(String, Int)],
        events: Int = 0, honourJobState: Bool = false, jobEvents: String = StreamKeys().stream("jobs")
    ) async throws -> Acknowledgement {
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.forwardAndAckScript), RedisArgument(3 + appends.count)]
        arguments.append(RedisArgument(stream))
        arguments.append(RedisArgument(counterKey))
        arguments.append(RedisArgument(jobEvents))
        for append in appends { arguments.append(RedisArgument(append.stream)) }
        arguments.append(RedisArgument(group))
        arguments.append(RedisArgument(id))
        arguments.append(RedisArgument(events))
        arguments.append(honourJobState ? "1" : "0")
        arguments.append(RedisArgument(counters.count))
        for (field, increment) in counters {
            arguments.append(RedisArgument(field))
            arguments.append(RedisArgument(increment))
        }
        for append in appends {
            arguments.append(append.maxLength.map { RedisArgument(max($0, 0)) } ?? RedisArgument(""))
            arguments.append(RedisArgument(append.fields.count))
            for (name, value) in append.fields {
                arguments.append(RedisArgument(name))
                arguments.append(RedisArgument(value))
            }
        }
        switch try await send(arguments).int {
        case 1: return .written
        case 2: return .droppedForJob
        default: return .alreadyAcknowledged
        }
    }
}
