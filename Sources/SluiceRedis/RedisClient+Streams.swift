/// Stream commands used by the triggers, the emitters and the dead-letter tools.
extension RedisClient {
    /// Creates consumer group `group` on `stream` (and the stream), reading from its start;
    /// an existing group is left as it is.
    public func ensureGroup(stream: String, group: String) async throws {
        let reply = try await withConnection { try $0.command(["XGROUP", "CREATE", RedisArgument(stream), RedisArgument(group), "0", "MKSTREAM"]) }
        if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") {
            throw RedisError(.command, message)
        }
    }

    /// Reads up to `count` new entries for `consumer`, waiting at most `block`.
    public func readGroup(stream: String, group: String, consumer: String, count: Int, block: Duration) async throws -> [StreamEntry] {
        let reply = try await send([
            "XREADGROUP", "GROUP", RedisArgument(group), RedisArgument(consumer), "COUNT", RedisArgument(count),
            "BLOCK", RedisArgument(block.milliseconds), "STREAMS", RedisArgument(stream), ">",
        ])
        guard let streams = reply.array, let first = streams.first?.array, first.count == 2 else { return [] }
        return StreamEntry.list(first[1])
    }

    /// Claims up to `count` entries pending longer than `minIdle` for `consumer`
    /// (`XAUTOCLAIM`), scanning from the start of the pending list. Claiming raises each
    /// entry's delivery count.
    public func autoClaim(stream: String, group: String, consumer: String, minIdle: Duration, count: Int) async throws -> [StreamEntry] {
        let reply = try await send([
            "XAUTOCLAIM", RedisArgument(stream), RedisArgument(group), RedisArgument(consumer),
            RedisArgument(minIdle.milliseconds), "0-0", "COUNT", RedisArgument(count),
        ])
        guard let parts = reply.array, parts.count >= 2 else {
            throw RedisError(.unexpectedReply, "XAUTOCLAIM answered an unexpected shape")
        }
        return StreamEntry.list(parts[1])
    }

    /// Claims entry `id` for `consumer` whatever its idle time, raising its delivery count;
    /// `nil` when it is no longer pending (acknowledged or deleted).
    public func claim(stream: String, group: String, consumer: String, id: String) async throws -> StreamEntry? {
        let reply = try await send(["XCLAIM", RedisArgument(stream), RedisArgument(group), RedisArgument(consumer), "0", RedisArgument(id)])
        return StreamEntry.list(reply).first
    }

    /// Resets the idle time of pending entries without counting a delivery (`XCLAIM … JUSTID`),
    /// so that no other consumer reclaims a chunk this one still holds.
    public func touch(stream: String, group: String, consumer: String, ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await send(["XCLAIM", RedisArgument(stream), RedisArgument(group), RedisArgument(consumer), "0"]
                       + ids.map { RedisArgument($0) } + ["JUSTID"])
    }

    /// The delivery count of pending entry `id`, `nil` when it is not pending.
    public func deliveryCount(stream: String, group: String, id: String) async throws -> Int? {
        let reply = try await send(["XPENDING", RedisArgument(stream), RedisArgument(group), RedisArgument(id), RedisArgument(id), "1"])
        guard let row = reply.array?.first?.array, row.count == 4, let count = row[3].int else { return nil }
        return Int(count)
    }

    /// Appends an entry and answers its id.
    @discardableResult
    public func add(stream: String, fields: [(String, [UInt8])]) async throws -> String {
        try await add(stream: stream, maxLength: nil, fields: fields)
    }

    /// Appends an entry to a stream kept near `maxLength` entries (`MAXLEN ~`, for streams whose
    /// readers only need what is recent; `nil` keeps every entry); answers its id.
    @discardableResult
    public func add(stream: String, maxLength: Int?, fields: [(String, [UInt8])]) async throws -> String {
        var arguments: [RedisArgument] = ["XADD", RedisArgument(stream)]
        if let maxLength { arguments += ["MAXLEN", "~", RedisArgument(maxLength)] }
        arguments.append("*")
        for (name, value) in fields {
            arguments.append(RedisArgument(name))
            arguments.append(RedisArgument(value))
        }
        guard let id = try await send(arguments).text else {
            throw RedisError(.unexpectedReply, "XADD answered no id")
        }
        return id
    }

    /// The id of the stream's newest entry; `0-0` when it is empty or does not exist.
    public func lastEntryID(stream: String) async throws -> String {
        StreamEntry.list(try await send(["XREVRANGE", RedisArgument(stream), "+", "-", "COUNT", "1"])).first?.id ?? "0-0"
    }

    /// Entries of `stream` after `id`, waiting up to `block` for one to arrive (`XREAD`, no
    /// group); empty when none came. `block` must be shorter than the client's timeout.
    public func read(stream: String, after id: String, count: Int, block: Duration) async throws -> [StreamEntry] {
        let milliseconds = block.components.seconds * 1000 + block.components.attoseconds / 1_000_000_000_000_000
        let reply = try await send(["XREAD", "COUNT", RedisArgument(count), "BLOCK", RedisArgument(Int(milliseconds)),
                                    "STREAMS", RedisArgument(stream), RedisArgument(id)])
        guard let streams = reply.array, let first = streams.first?.array, first.count == 2 else { return [] }
        return StreamEntry.list(first[1])
    }

    /// Entries of `stream` from `start` to `end`, at most `count`.
    public func range(stream: String, start: String = "-", end: String = "+", count: Int = 1000) async throws -> [StreamEntry] {
        StreamEntry.list(try await send(["XRANGE", RedisArgument(stream), RedisArgument(start), RedisArgument(end), "COUNT", RedisArgument(count)]))
    }

    /// The group's state on `stream`: entries not yet delivered (`lag`) and delivered but not
    /// acknowledged (`pending`); `nil` when the group does not exist.
    public func groupState(stream: String, group: String) async throws -> (lag: Int, pending: Int, lastDelivered: String)? {
        let reply = try await withConnection { try $0.command(["XINFO", "GROUPS", RedisArgument(stream)]) }
        if case .error = reply { return nil }
        for info in reply.array ?? [] {
            let fields = Self.pairs(info)
            guard fields["name"]?.text == group else { continue }
            let pending = Int(fields["pending"]?.int ?? 0)
            let lag = Int(fields["lag"]?.int ?? 0)
            return (lag, pending, fields["last-delivered-id"]?.text ?? "0-0")
        }
        return nil
    }

    /// Deletes the entries of `stream` that every consumer group has acknowledged
    /// (`XTRIM MINID ~` below the oldest entry still pending or undelivered in any group).
    /// A stream without groups is left alone. Answers the number of entries removed.
    @discardableResult
    public func trimAcknowledged(stream: String) async throws -> Int {
        let reply = try await withConnection { try $0.command(["XINFO", "GROUPS", RedisArgument(stream)]) }
        guard let groups = reply.array, !groups.isEmpty else { return 0 }
        var floor: StreamID?
        for info in groups {
            let fields = Self.pairs(info)
            guard let name = fields["name"]?.text, let lastText = fields["last-delivered-id"]?.text,
                  var limit = StreamID(lastText) else { return 0 }
            // Undelivered entries follow last-delivered-id; keep the last delivered one as well.
            if (fields["pending"]?.int ?? 0) > 0 {
                let summary = try await send(["XPENDING", RedisArgument(stream), RedisArgument(name)])
                if let parts = summary.array, parts.count >= 2, let oldest = parts[1].text.flatMap(StreamID.init) {
                    limit = min(limit, oldest)
                }
            }
            floor = floor.map { min($0, limit) } ?? limit
        }
        guard let floor else { return 0 }
        return Int(try await send(["XTRIM", RedisArgument(stream), "MINID", "~", RedisArgument(floor.description)]).int ?? 0)
    }

    static let trimScript = """
        local removed = 0
        if ARGV[1] ~= '' then removed = removed + redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1]) end
        if ARGV[2] ~= '' then
          local now = redis.call('TIME')
          local floor = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
          if floor > 0 then removed = removed + redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', floor)) end
        end
        return removed
        """

    /// Trims `stream` (exactly) to its newest `maxLength` entries and to those younger than
    /// `maxAge` by Redis's clock (entry ids are Redis's milliseconds); answers how many went.
    /// A stream that does not exist stays so.
    @discardableResult
    public func trim(stream: String, maxLength: Int?, maxAge: Duration?) async throws -> Int {
        let reply = try await send([
            "EVAL", RedisArgument(Self.trimScript), "1", RedisArgument(stream),
            maxLength.map { RedisArgument(max($0, 0)) } ?? RedisArgument(""),
            maxAge.map { RedisArgument(max($0.milliseconds, 0)) } ?? RedisArgument(""),
        ])
        return Int(reply.int ?? 0)
    }

    static func pairs(_ reply: RedisReply) -> [String: RedisReply] {
        var result: [String: RedisReply] = [:]
        guard let items = reply.array else { return result }
        var index = 0
        while index + 1 < items.count {
            if let key = items[index].text { result[key] = items[index + 1] }
            index += 2
        }
        return result
    }
}
