import Sluice

/// Maps the flat records of a CSV upload onto the event shape: each column goes to a dotted
/// path (a column whose name has dots goes to that path; the built-in names below map onto
/// DESIGN.md's shape; other columns stay top-level members). Cells of JSON columns holding a
/// JSON object or array are parsed; an empty cell is left out.
public struct CSVColumnMapping: Sendable {
    /// The flat column names the built-in shape knows (those `gen_events.py` writes).
    public static let builtin: [String: String] = [
        "event_id": "metadata.event_id", "timestamp": "metadata.timestamp", "version": "metadata.version",
        "source": "metadata.source", "user_id": "user.id", "session_id": "user.session_id",
        "device_type": "context.device_type", "os_version": "context.os_version", "app_version": "context.app_version",
        "country": "context.location.country", "region": "context.location.region",
        "event_type": "payload.event_type", "properties": "payload.properties",
        "custom_data": "payload.custom_data", "attributes": "user.attributes",
    ]

    /// How deep a JSON column's cell may nest and still be parsed (a deeper one stays a
    /// string): the cell sits a few levels down in its event, and the event in its chunk,
    /// whose parser must accept the whole.
    public static let maxCellDepth = 64

    var paths: [String: String] {
        didSet { compiled = paths.mapValues(JSONPath.init) }
    }
    private var compiled: [String: JSONPath]
    var jsonColumns: Set<String>

    public init(paths: [String: String] = CSVColumnMapping.builtin, jsonColumns: Set<String> = ["properties", "custom_data", "attributes"]) {
        self.paths = paths
        compiled = paths.mapValues(JSONPath.init)
        self.jsonColumns = jsonColumns
    }

    /// Reads `config.csv` (`columns: {name: path}`, `json_columns: [name]`), on top of the built-in names.
    public init(config: JSONValue?, file: String) throws {
        self.init()
        guard let config else { return }
        if let columns = config["columns"] {
            guard case .object(let object) = columns else {
                throw ManifestError(.badValue, file: file, key: "config.csv.columns", message: "must map column names to dotted paths")
            }
            for (name, value) in object {
                guard case .string(let path) = value, !path.isEmpty else {
                    throw ManifestError(.badValue, file: file, key: "config.csv.columns.\(name)", message: "must be a dotted path")
                }
                paths[name] = path
            }
        }
        if let json = config["json_columns"] {
            guard case .array(let items) = json else {
                throw ManifestError(.badValue, file: file, key: "config.csv.json_columns", message: "must be a list of column names")
            }
            jsonColumns = Set(items.compactMap(\.stringValue))
        }
    }

    /// The path column `name` goes to.
    func path(of name: String) -> JSONPath {
        compiled[name] ?? JSONPath(name)
    }

    /// The event for a flat CSV record.
    public func map(_ record: JSONValue) -> JSONValue {
        guard case .object(let flat) = record else { return record }
        var event = JSONValue.object([:])
        let parser = JSONParser(maxDepth: Self.maxCellDepth)
        for (name, cell) in flat {
            guard cell != .null else { continue }
            var value = cell
            if jsonColumns.contains(name), case .string(let text) = cell, let first = text.utf8.first,
               first == UInt8(ascii: "{") || first == UInt8(ascii: "["), let parsed = try? parser.parse(Array(text.utf8)) {
                value = parsed
            }
            // A column without a mapping keeps its name (a dotted name nests).
            event.setValue(value, at: path(of: name))
        }
        return event
    }

    /// The layout of the events of a CSV whose header is `header`, written straight from the
    /// cells; nil when two columns' paths overlap (one is the other, or lies inside it), where
    /// the event depends on which cells are empty and only ``map(_:)`` builds it right.
    public func layout(header: [String]) -> CSVEventLayout? {
        CSVEventLayout(header: header, mapping: self)
    }
}

/// The event shape of one CSV header under a ``CSVColumnMapping``, compiled once: each
/// record's event is written as JSON bytes from its cells, with no tree built (an upload's
/// records number in the millions). The event equals what ``CSVColumnMapping/map(_:)`` builds
/// for the same record, keys in the same order; a JSON cell is embedded as sent (so its bytes
/// differ from the tree's only in whitespace).
///
/// The shape is flattened into a list of steps over plain integers (open an object, write a
/// cell, close), so that writing a record touches no reference-counted value.
public struct CSVEventLayout: Sendable {
    /// The shape as a tree, while it is built.
    indirect enum Node: Sendable {
        case cell(Int)
        case object([Member])
    }

    struct Member: Sendable {
        var name: String
        var node: Node
    }

    /// One step of writing an event; `key` is a range of ``keys``.
    enum Step: Sendable {
        case open(key: Range<Int>)
        case cell(Int, key: Range<Int>, json: Bool)
        case close
    }

    let steps: [Step]
    /// Every key, escaped and quoted, with its colon, one after the other.
    let keys: [UInt8]
    /// The deepest object nesting below the event.
    let depth: Int
    let parser = JSONParser(maxDepth: CSVColumnMapping.maxCellDepth)

    init?(header: [String], mapping: CSVColumnMapping) {
        var root: [Member] = []
        for (index, name) in header.enumerated() {
            guard Self.insert(cell: index, at: mapping.path(of: name).keys[...], into: &root) else { return nil }
        }
        var steps: [Step] = [], keys: [UInt8] = [], depth = 0
        func flatten(_ members: [Member], level: Int) {
            depth = max(depth, level)
            for member in members {
                let start = keys.count
                JSONValue.writeString(member.name, into: &keys)
                keys.append(UInt8(ascii: ":"))
                switch member.node {
                case .cell(let index):
                    steps.append(.cell(index, key: start..<keys.count, json: mapping.jsonColumns.contains(header[index])))
                case .object(let children):
                    steps.append(.open(key: start..<keys.count))
                    flatten(children, level: level + 1)
                    steps.append(.close)
                }
            }
        }
        flatten(root, level: 0)
        self.steps = steps
        self.keys = keys
        self.depth = depth
    }

    /// Adds the path of column `cell`; false when it meets another column's path.
    private static func insert(cell: Int, at keys: ArraySlice<String>, into members: inout [Member]) -> Bool {
        guard let key = keys.first else { return false }
        if let index = members.firstIndex(where: { $0.name == key }) {
            guard keys.count > 1, case .object(var children) = members[index].node else { return false }
            guard insert(cell: cell, at: keys.dropFirst(), into: &children) else { return false }
            members[index].node = .object(children)
            return true
        }
        if keys.count == 1 {
            members.append(Member(name: key, node: .cell(cell)))
        } else {
            var children: [Member] = []
            _ = insert(cell: cell, at: keys.dropFirst(), into: &children)
            members.append(Member(name: key, node: .object(children)))
        }
        return true
    }

    /// Appends the event of the record whose cells are `cells`, cell `i` ending at `ends[i]`
    /// (an empty cell is left out, and an object left empty by that too).
    public func write(cells: UnsafeBufferPointer<UInt8>, ends: UnsafeBufferPointer<Int>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        steps.withUnsafeBufferPointer { steps in
            keys.withUnsafeBufferPointer { keys in
                withUnsafeTemporaryAllocation(of: (mark: Int, wrote: Bool).self, capacity: depth + 1) { open in
                    var level = 0
                    // Whether the object being written has a member yet.
                    var wrote = false
                    for step in steps {
                        switch step {
                        case .open(let key):
                            open[level] = (out.count, wrote)
                            level += 1
                            if wrote { out.append(UInt8(ascii: ",")) }
                            out.append(contentsOf: UnsafeBufferPointer(rebasing: keys[key]))
                            out.append(UInt8(ascii: "{"))
                            wrote = false
                        case .close:
                            level -= 1
                            if wrote {
                                out.append(UInt8(ascii: "}"))
                            } else {
                                // Nothing in it: the object and its key go.
                                out.removeLast(out.count - open[level].mark)
                                wrote = open[level].wrote
                            }
                        case .cell(let index, let key, let json):
                            let start = index == 0 ? 0 : ends[index - 1]
                            let cell = UnsafeBufferPointer(rebasing: cells[start..<ends[index]])
                            guard !cell.isEmpty else { continue }
                            if wrote { out.append(UInt8(ascii: ",")) }
                            out.append(contentsOf: UnsafeBufferPointer(rebasing: keys[key]))
                            if json, cell[0] == UInt8(ascii: "{") || cell[0] == UInt8(ascii: "["),
                               (try? parser.parse(UnsafeRawBufferPointer(cell))) != nil {
                                out.append(contentsOf: cell)  // valid JSON: embedded as sent
                            } else {
                                JSONValue.writeString(utf8: UnsafeRawBufferPointer(cell), into: &out)
                            }
                            wrote = true
                        }
                    }
                }
            }
        }
        out.append(UInt8(ascii: "}"))
    }
}
