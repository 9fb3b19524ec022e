/// One stream entry: its id and its field/value pairs in order.
public struct StreamEntry: Sendable {
    public var id: String
    public var fields: [(String, [UInt8])]

    public init(id: String, fields: [(String, [UInt8])]) {
        self.id = id
        self.fields = fields
    }

    /// The value of the first field named `name`, as text.
    public func field(_ name: String) -> String? {
        fields.first { $0.0 == name }.map { String(decoding: $0.1, as: UTF8.self) }
    }

    /// Parses `[[id, [field, value, …]], …]`; entries whose fields are NIL (deleted) are skipped.
    static func list(_ reply: RedisReply) -> [StreamEntry] {
        guard let items = reply.array else { return [] }
        return items.compactMap { item in
            guard let pair = item.array, pair.count == 2, let id = pair[0].text, let raw = pair[1].array else { return nil }
            var fields: [(String, [UInt8])] = []
            fields.reserveCapacity(raw.count / 2)
            var index = 0
            while index + 1 < raw.count {
                fields.append((raw[index].text ?? "", raw[index + 1].bytes ?? []))
                index += 2
            }
            return StreamEntry(id: id, fields: fields)
        }
    }
}

/// A stream entry id (`milliseconds-sequence`), ordered as Redis orders them.
public struct StreamID: Sendable, Comparable, CustomStringConvertible {
    public var milliseconds: UInt64
    public var sequence: UInt64

    public init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        milliseconds = ms
        sequence = seq
    }

    public static func < (a: StreamID, b: StreamID) -> Bool {
        (a.milliseconds, a.sequence) < (b.milliseconds, b.sequence)
    }

    public var description: String { "\(milliseconds)-\(sequence)" }
}
