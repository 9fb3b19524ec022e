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
    /// Masks the header's column names before anything keeps them (the events' keys, the job's
    /// schema): a file without a header row has its first record taken as one. `nil`: kept.
    public var headerMasking: (@Sendable ([String]) -> [String])?

    public init(paths: [String: String] = CSVColumnMapping.builtin, jsonColumns: Set<String> = ["properties", "custom_data", "attributes"]) {
        self.paths = paths
        compiled = paths.mapValues(JSONPath.init)
        self.jsonColumns = jsonColumns
    }

    /// Reads `config.csv` (`columns: {name: path}`, `json_columns: [name]`), on top of the built-in names.
    public init(config: JSONValue?, file: String) throws {
        try self.init(config: config, file: file, paths: Self.builtin, jsonColumns: ["properties", "custom_data", "attributes"])
    }

    /// Reads `config.csv` on top of `paths` and `jsonColumns` (a `json_columns` list replaces them).
    public init(config: JSONValue?, file: String, paths: [String: String], jsonColumns: Set<String>) throws {
        self.init(paths: paths, jsonColumns: jsonColumns)
        guard let config else { return }
        if let columns = config["columns"] {
            guard case .object(let object) = columns else {
                throw ManifestError(.badValue, file: file, key: "config.csv.columns", message: "must map column names to dotted paths")
            }
            for (name, value) in object {
                guard case .string(let path) = value, !path.isEmpty else {
                    throw ManifestError(.badValue, file: file, key: "config.csv.columns.\(name)", message: "must be a dotted path")
                }
                self.paths[name] = path
            }
        }
        if let json = config["json_columns"] {
            guard case .array(let items) = json else {
                throw ManifestError(.badValue, file: file, key: "config.csv.json_columns", message: "must be a list of column names")
            }
            self.jsonColumns = Set(items.compactMap(\.stringValue))
        }
        // An initializer's assignments call no `didSet`: the compiled paths are made here.
        compiled = self.paths.mapValues(JSONPath.init)
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
            place(cell, json: jsonColumns.contains(name), at: path(of: name), into: &event, parser: parser)
        }
        return event
    }

    /// A header's columns, compiled once for ``map(cells:columns:)``: each one's path and
    /// whether it holds JSON.
    struct Columns: Sendable {
        let paths: [JSONPath]
        let json: [Bool]
    }

    func columns(header: [String]) -> Columns {
        Columns(paths: header.map(path(of:)), json: header.map(jsonColumns.contains))
    }

    /// The event of a record whose `cells` (a string, or `null` for an empty cell) are those
    /// of `columns`: what ``map(_:)`` makes of the flat record, without a column's path split
    /// or its name hashed again for every record.
    func map(cells: [JSONValue], columns: Columns) -> JSONValue {
        var event = JSONValue.object([:])
        let parser = JSONParser(maxDepth: Self.maxCellDepth)
        for index in cells.indices {
            place(cells[index], json: columns.json[index], at: columns.paths[index], into: &event, parser: parser)
        }
        return event
    }

    /// Puts one cell into `event` at `path` (a JSON column's object or array cell parsed); a
    /// `null` cell is left out.
    private func place(_ cell: JSONValue, json: Bool, at path: JSONPath, into event: inout JSONValue, parser: JSONParser) {
        guard cell != .null else { return }
        var value = cell
        if json, case .string(let text) = cell, let first = text.utf8.first,
           first == UInt8(ascii: "{") || first == UInt8(ascii: "["), let parsed = try? parser.parse(Array(text.utf8)) {
            value = parsed
        }
        // A column without a mapping keeps its name (a dotted name nests).
        event.setValue(value, at: path)
    }

    /// The layout of the events of a CSV whose header is `header`, written as rows of cells;
    /// nil when two columns' paths overlap (one is the other, or lies inside it), where the
    /// event depends on which cells are empty and only ``map(_:)`` builds it right.
    public func layout(header: [String]) -> CSVEventLayout? {
        CSVEventLayout(header: header, mapping: self)
    }
}

/// The event shape of one CSV header under a ``CSVColumnMapping``, compiled once: each record
/// is written as a row, a JSON array of its cells, and its event is the ``shape`` with the
/// cells in place (``RowShape``). So an upload's millions of records are written without a tree
/// built or a key repeated; the event equals what ``CSVColumnMapping/map(_:)`` builds for the
/// same record, keys in the same order, except that a JSON cell is embedded as sent (its bytes
/// differ from the tree's only in whitespace).
public struct CSVEventLayout: Sendable {
    /// The shape as a chunk of rows carries it (``ChunkCodec``): the event's JSON object with
    /// each column's number in its place.
    public let shape: [UInt8]
    /// Whether each column holds JSON (embedded when its cell is a valid object or array).
    let jsonColumns: [Bool]
    let parser = JSONParser(maxDepth: CSVColumnMapping.maxCellDepth)

    init?(header: [String], mapping: CSVColumnMapping) {
        var tree = JSONValue.object([:])
        for (index, name) in header.enumerated() { tree.setValue(.int(Int64(index)), at: mapping.path(of: name)) }
        let shape = tree.serializedBytes
        // Where two paths overlap, the later one replaced the earlier (a leaf by an object or
        // the other way round), so some column is missing from the shape's leaves.
        guard let read = try? RowShape(json: shape), read.columns == header.count else { return nil }
        self.shape = shape
        jsonColumns = header.map { mapping.jsonColumns.contains($0) }
    }

    /// Appends the row of the record whose cells are `cells`, cell `i` ending at `ends[i]`: a
    /// JSON array with a value per column, `null` for an empty cell; a JSON column's cell
    /// holding a valid object or array is embedded as sent, any other cell is a string.
    public func writeRow(cells: UnsafeBufferPointer<UInt8>, ends: UnsafeBufferPointer<Int>, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        var start = 0
        for index in 0..<ends.count {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            let cell = UnsafeBufferPointer(rebasing: cells[start..<ends[index]])
            start = ends[index]
            if cell.isEmpty {
                out.append(contentsOf: Self.null)
            } else if jsonColumns[index], cell[0] == UInt8(ascii: "{") || cell[0] == UInt8(ascii: "["),
                      parser.isValid(UnsafeRawBufferPointer(cell)) {
                out.append(contentsOf: cell)
            } else {
                JSONValue.writeString(utf8: UnsafeRawBufferPointer(cell), into: &out)
            }
        }
        out.append(UInt8(ascii: "]"))
    }

    private static let null: [UInt8] = Array("null".utf8)
}
