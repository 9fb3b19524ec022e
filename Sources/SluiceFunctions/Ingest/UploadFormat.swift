import Sluice

/// The upload formats ingest reads, and how a request names one.
public enum UploadFormat: String, Sendable, CaseIterable {
    case ndjson, json, csv, xml, text

    /// From `?format=` (wins), else the `Content-Type`, else the file name's extension
    /// (`?filename=` or `Content-Disposition`); nil when none names a known format.
    public static func detect(query: String?, contentType: String?, filename: String?) -> UploadFormat? {
        if let query {
            switch query.lowercased() {
            case "ndjson", "jsonl", "jsonlines": return .ndjson
            case "json": return .json
            case "csv": return .csv
            case "xml": return .xml
            case "text", "txt", "plain": return .text
            default: return nil
            }
        }
        if let contentType {
            switch contentType.mediaType {
            case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
                return .ndjson
            case "application/json": return .json
            case "text/csv", "application/csv": return .csv
            case "application/xml", "text/xml": return .xml
            case "text/plain": return .text
            default: break
            }
        }
        if let filename, let dot = filename.lastIndex(of: ".") {
            switch filename[filename.index(after: dot)...].lowercased() {
            case "ndjson", "jsonl": return .ndjson
            case "json": return .json
            case "csv": return .csv
            case "xml": return .xml
            case "txt", "log", "text": return .text
            default: break
            }
        }
        return nil
    }

    /// The file name in a `Content-Disposition` header (`filename="x.csv"`).
    public static func filename(fromContentDisposition header: String) -> String? {
        for part in header.split(separator: ";") {
            let item = String(part).trimmingSpaces()
            guard item.lowercased().hasPrefix("filename=") else { continue }
            var name = Substring(item.dropFirst("filename=".count))
            if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 { name = name.dropFirst().dropLast() }
            return String(name)
        }
        return nil
    }
}

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

    /// The event for a flat CSV record.
    public func map(_ record: JSONValue) -> JSONValue {
        guard case .object(let flat) = record else { return record }
        var event = JSONValue.object([:])
        let parser = JSONParser()
        for (name, cell) in flat {
            guard cell != .null else { continue }
            var value = cell
            if jsonColumns.contains(name), case .string(let text) = cell, let first = text.utf8.first,
               first == UInt8(ascii: "{") || first == UInt8(ascii: "["), let parsed = try? parser.parse(Array(text.utf8)) {
                value = parsed
            }
            // A column without a mapping keeps its name (a dotted name nests).
            event.setValue(value, at: compiled[name] ?? JSONPath(name))
        }
        return event
    }
}
