/// The shape shared by events written as rows (a CSV upload's, carried by version 2 chunks,
/// see ``ChunkCodec``): a JSON object whose leaves are the column numbers 0 to n-1, each once,
/// as in `{"user":{"id":0},"amount":1}`. A row is an array of n values; its event is the shape
/// with each column replaced by the row's value, where `null` leaves the member out and an
/// object left empty by that goes too.
public struct RowShape: Sendable {
    indirect enum Node: Sendable {
        case column(Int)
        case object([(key: String, node: Node)])
    }

    let members: [(key: String, node: Node)]
    /// How many values a row holds.
    public let columns: Int

    /// Reads a shape from its JSON text.
    /// - Throws: `chunk_bad_shape` when it is not an object whose leaves number the columns.
    public init(json: [UInt8]) throws(ChunkCodec.DecodingError) {
        let bad = ChunkCodec.DecodingError(code: "chunk_bad_shape", message: "shape is not an object whose leaves number the columns")
        guard case .object(let root)? = try? JSONParser().parse(json) else { throw bad }
        var seen: Set<Int> = []
        func read(_ object: JSONObject) throws(ChunkCodec.DecodingError) -> [(key: String, node: Node)] {
            var members: [(key: String, node: Node)] = []
            for (key, value) in object {
                switch value {
                case .int(let column) where column >= 0 && column < 1 << 16:
                    guard seen.insert(Int(column)).inserted else { throw bad }
                    members.append((key, .column(Int(column))))
                case .object(let child):
                    members.append((key, .object(try read(child))))
                default:
                    throw bad
                }
            }
            return members
        }
        members = try read(root)
        columns = seen.count
        guard seen.allSatisfy({ $0 < columns }) else { throw bad }
    }

    /// The event of `row`.
    /// - Throws: `chunk_bad_events` when the row is not an array of one value per column.
    public func event(_ row: JSONValue) throws(ChunkCodec.DecodingError) -> JSONValue {
        guard case .array(let cells) = row, cells.count == columns else {
            throw ChunkCodec.DecodingError(code: "chunk_bad_events", message: "a row is not an array of \(columns) values")
        }
        return .object(Self.object(members, cells) ?? JSONObject())
    }

    /// The events of `rows`.
    func events(_ rows: [JSONValue]) throws(ChunkCodec.DecodingError) -> [Event] {
        var events: [Event] = []
        events.reserveCapacity(rows.count)
        for row in rows { events.append(Event(try event(row))) }
        return events
    }

    /// The object of `members` for a row's `cells`; nil when it would be empty.
    private static func object(_ members: [(key: String, node: Node)], _ cells: [JSONValue]) -> JSONObject? {
        var out: [(key: String, value: JSONValue)] = []
        out.reserveCapacity(members.count)
        for member in members {
            switch member.node {
            case .column(let column):
                let cell = cells[column]
                if case .null = cell { continue }
                out.append((member.key, cell))
            case .object(let children):
                if let child = object(children, cells) { out.append((member.key, .object(child))) }
            }
        }
        return out.isEmpty ? nil : JSONObject(uncheckedMembers: out)
    }
}
