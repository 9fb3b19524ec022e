import Sluice
import SluicePrivacy
import SluiceUploads

/// Makes a dataset's spec from a sample of its records (a first upload, or the sample sent to
/// `POST /api/v1/datasets`): one field per leaf, in the order first seen, typed by the values
/// seen. Every field is optional but the key's; the key is the one the caller names, else the
/// first field called `id` or ending in `_id` that every sampled record holds.
enum DatasetDetector {
    /// How deep objects are followed; a deeper object is one `json` field.
    static let maxDepth = 8

    /// The spec of dataset `name` from `records`.
    /// - Parameters:
    ///   - textCells: the values are text read from a file without types (CSV): a string is
    ///     typed by what it reads as (`42` integer, `19.99` number, `true` boolean, an RFC 3339
    ///     date-time timestamp); otherwise only strings that are date-times are read as such.
    ///   - key: the key's fields (paths), as the caller names them; nil to detect one.
    ///   - time: the event-time field, if the caller names one.
    ///   - keyMasker: masks personal data in the records' keys before any becomes a field (an
    ///     e-mail address used as a key never names a column), as CSV headers are masked.
    /// - Throws: ``DatasetError`` for a sample without records, a name or column that cannot be
    ///   used, no key found.
    static func detect(name: String, records: [JSONValue], textCells: Bool, key: [String]?, time: String?,
                       keyMasker: PIIMasker? = IngestFunction.headerMasker) throws(DatasetError) -> DatasetSpec {
        guard !records.isEmpty else { throw DatasetError(.invalid, key: "sample", "the sample holds no records") }
        var order: [String] = []
        var kinds: [String: Kind] = [:]
        var present: [String: Int] = [:]
        for record in records {
            guard case .object(let object) = record else { continue }
            walk(object, prefix: "", depth: 1, textCells: textCells, keyMasker: keyMasker) { path, kind in
                if let existing = kinds[path] {
                    kinds[path] = existing.merged(with: kind)
                } else {
                    order.append(path)
                    kinds[path] = kind
                }
                if kind != .empty { present[path, default: 0] += 1 }
                guard order.count <= DatasetSpec.maxFields else { return false }
                return true
            }
            guard order.count <= DatasetSpec.maxFields else {
                throw DatasetError(.tooManyFields, key: "fields", "the sample has more than \(DatasetSpec.maxFields) fields; a dataset may have at most \(DatasetSpec.maxFields)")
            }
        }
        let objects = records.filter { if case .object = $0 { true } else { false } }.count
        let keyPaths: [String]
        if let key {
            for path in key where kinds[path] == nil {
                throw DatasetError(.invalid, key: "key", "the key field '\(DatasetSpec.quotedForMessage(path))' is not in the sample", column: path)
            }
            keyPaths = key
        } else {
            let candidate = order.first { path in
                let column = DatasetSpec.defaultColumn(forPath: path)
                guard column == "id" || column.hasSuffix("_id") else { return false }
                guard let kind = kinds[path], kind == .string || kind == .integer else { return false }
                return present[path, default: 0] == objects
            }
            guard let candidate else {
                throw DatasetError(.invalid, key: "key", "no key found (a field called id or ending in _id that every record holds); name one with ?key=FIELD")
            }
            keyPaths = [candidate]
        }
        if let time {
            guard kinds[time] == .timestamp else {
                throw DatasetError(.invalid, key: "time", "the time field '\(DatasetSpec.quotedForMessage(time))' does not hold date-times in the sample", column: time)
            }
        }
        let fields = order.map { path in
            DatasetSpec.Field(path: path, type: kinds[path]!.type, required: keyPaths.contains(path),
                              column: DatasetSpec.defaultColumn(forPath: path))
        }
        let keyColumns = keyPaths.map { DatasetSpec.defaultColumn(forPath: $0) }
        let spec = DatasetSpec(name: name, fields: fields, key: keyColumns, time: time, detected: true)
        try spec.validate()
        return spec
    }

    /// What the values at one path were.
    enum Kind: Equatable {
        case empty, string, integer, number, boolean, timestamp, object, array, json

        var type: DatasetSpec.FieldType {
            switch self {
            case .empty, .string: .string
            case .integer: .integer
            case .number: .number
            case .boolean: .boolean
            case .timestamp: .timestamp
            case .object: .object
            case .array: .array
            case .json: .json
            }
        }

        func merged(with other: Kind) -> Kind {
            if self == other || other == .empty { return self }
            switch (self, other) {
            case (.empty, _): return other
            case (.integer, .number), (.number, .integer): return .number
            case (.object, _), (_, .object), (.array, _), (_, .array), (.json, _), (_, .json): return .json
            default: return .string
            }
        }
    }

    /// Calls `visit` with each leaf's path and kind; stops when it answers false.
    @discardableResult
    private static func walk(_ object: JSONObject, prefix: String, depth: Int, textCells: Bool, keyMasker: PIIMasker?,
                             _ visit: (String, Kind) -> Bool) -> Bool {
        let keys = keyMasker?.maskKeys(Array(object.keys)) ?? Array(object.keys)
        for ((_, value), key) in zip(object, keys) {
            let path = prefix.isEmpty ? key : "\(prefix).\(key)"
            switch value {
            case .object(let child) where depth < maxDepth && !child.isEmpty:
                if !walk(child, prefix: path, depth: depth + 1, textCells: textCells, keyMasker: keyMasker, visit) { return false }
            case .object:
                if !visit(path, .object) { return false }
            default:
                if !visit(path, kind(of: value, textCells: textCells)) { return false }
            }
        }
        return true
    }

    static func kind(of value: JSONValue, textCells: Bool) -> Kind {
        switch value {
        case .null: return .empty
        case .bool: return .boolean
        case .int: return .integer
        case .double: return .number
        case .array: return .array
        case .object: return .object
        case .string(let text):
            if text.isEmpty { return .empty }
            if textCells {
                var inference = ColumnTypeInference()
                inference.observe(text)
                switch inference.type {
                case .integer: return .integer
                case .number: return .number
                case .boolean: return .boolean
                case .timestamp: return Timestamp.milliseconds(text) != nil ? .timestamp : .string
                case .empty, .string: return .string
                }
            }
            return Timestamp.milliseconds(text) != nil ? .timestamp : .string
        }
    }
}
