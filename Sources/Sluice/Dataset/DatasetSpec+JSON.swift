extension DatasetSpec {
    static let topKeys: Set<String> = ["name", "description", "fields", "columns", "key", "time", "subject", "table", "indexes", "chain", "steps", "detected", "unmasked", "writers"]
    static let fieldKeys: Set<String> = ["name", "path", "type", "required", "column", "pii"]
    static let columnKeys: Set<String> = ["name", "type", "required"]

    /// Reads a dataset from its JSON (or YAML, read as JSON) form and checks it
    /// (``validate()``). `name`, when given, is the name the file or URL says: a `name` in the
    /// document must then agree.
    /// - Throws: ``DatasetError``.
    public init(json: JSONValue, name expected: String? = nil) throws(DatasetError) {
        guard case .object(let root) = json else { throw DatasetError(.invalid, key: "", "a dataset is a mapping of keys") }
        for key in root.keys where !Self.topKeys.contains(key) {
            throw DatasetError(.invalid, key: Self.quotedForMessage(key), "unknown key (allowed: \(Self.topKeys.sorted().joined(separator: ", ")))")
        }
        let name: String
        switch (root["name"], expected) {
        case (.string(let declared)?, let expected?):
            guard declared == expected else {
                throw DatasetError(.invalid, key: "name", "is '\(Self.quotedForMessage(declared))' but the dataset is '\(Self.quotedForMessage(expected))'")
            }
            name = declared
        case (.string(let declared)?, nil): name = declared
        case (nil, let expected?): name = expected
        default: throw DatasetError(.invalid, key: "name", "a dataset needs a name (a string)")
        }
        guard case .array(let items)? = root["fields"] else { throw DatasetError(.invalid, key: "fields", "must be a list of fields") }
        guard items.count <= Self.maxFields else {
            throw DatasetError(.tooManyFields, key: "fields", "\(items.count) fields; a dataset may have at most \(Self.maxFields)")
        }
        var fields: [Field] = []
        fields.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            fields.append(try Self.field(item, key: "fields[\(index)]"))
        }
        var columns: [Column]?
        if let value = root["columns"] {
            guard case .array(let items) = value else { throw DatasetError(.invalid, key: "columns", "must be a list of {name, type, required}") }
            guard items.count <= Self.maxFields else {
                throw DatasetError(.tooManyFields, key: "columns", "\(items.count) columns; a dataset may have at most \(Self.maxFields)")
            }
            columns = try items.enumerated().map { (index, item) throws(DatasetError) in try Self.column(item, key: "columns[\(index)]") }
        }
        let key: [String]
        switch root["key"] {
        case .string(let one)?: key = [one]
        case .array(let many)?:
            key = try many.map { (value) throws(DatasetError) in
                guard case .string(let text) = value else { throw DatasetError(.invalid, key: "key", "must be a column name or a list of them") }
                return text
            }
        case nil: throw DatasetError(.invalid, key: "key", "a dataset needs a key: the column(s) that identify a record")
        default: throw DatasetError(.invalid, key: "key", "must be a column name or a list of them")
        }
        let table: TableName?
        switch root["table"] {
        case nil, .null?: table = nil
        case .string(let text)?:
            let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            table = parts.count == 2 ? TableName(schema: parts[0], name: parts[1]) : TableName(schema: Self.defaultSchema, name: text)
        default: throw DatasetError(.invalid, key: "table", "must be a table name (schema.table or table)")
        }
        var indexes: [[String]] = []
        if let value = root["indexes"] {
            guard case .array(let items) = value else { throw DatasetError(.invalid, key: "indexes", "must be a list of column lists") }
            indexes = try items.enumerated().map { (index, item) throws(DatasetError) in
                switch item {
                case .string(let one): return [one]
                case .array(let many):
                    return try many.map { (value) throws(DatasetError) in
                        guard case .string(let text) = value else { throw DatasetError(.invalid, key: "indexes[\(index)]", "must be column names") }
                        return text
                    }
                default: throw DatasetError(.invalid, key: "indexes[\(index)]", "must be a column name or a list of them")
                }
            }
        }
        var chain = Self.defaultChain
        if let value = root["chain"] {
            guard case .array(let items) = value else { throw DatasetError(.invalid, key: "chain", "must be a list of function names") }
            chain = try items.map { (value) throws(DatasetError) in
                guard case .string(let text) = value else { throw DatasetError(.invalid, key: "chain", "must be a list of function names") }
                return text
            }
        }
        var steps: [String: JSONValue] = [:]
        if let value = root["steps"] {
            guard case .object(let object) = value else { throw DatasetError(.invalid, key: "steps", "must map function names to their settings") }
            for (function, settings) in object {
                guard case .object = settings else { throw DatasetError(.invalid, key: "steps.\(Self.quotedForMessage(function))", "must be a mapping") }
                steps[function] = settings
            }
        }
        let detected: Bool
        switch root["detected"] {
        case nil: detected = false
        case .bool(let flag)?: detected = flag
        default: throw DatasetError(.invalid, key: "detected", "must be true or false")
        }
        let unmasked: Bool
        switch root["unmasked"] {
        case nil: unmasked = false
        case .bool(let flag)?: unmasked = flag
        default: throw DatasetError(.invalid, key: "unmasked", "must be true or false")
        }
        func optionalString(_ key: String) throws(DatasetError) -> String? {
            switch root[key] {
            case nil, .null?: return nil
            case .string(let text)?: return text
            default: throw DatasetError(.invalid, key: key, "must be a string")
            }
        }
        self.init(name: name, fields: fields, columns: columns, key: key, time: try optionalString("time"), subject: try optionalString("subject"),
                  table: table, indexes: indexes, chain: chain, steps: steps, description: try optionalString("description"),
                  detected: detected)
        self.unmasked = unmasked
        if let value = root["writers"] {
            guard case .array(let items) = value, items.allSatisfy({ $0.stringValue != nil }) else {
                throw DatasetError(.invalid, key: "writers", "must be a list of role names")
            }
            writers = items.compactMap(\.stringValue)
        }
        try validate()
    }

    private static func field(_ item: JSONValue, key: String) throws(DatasetError) -> Field {
        guard case .object(let object) = item else { throw DatasetError(.invalid, key: key, "a field is a mapping {name, type, required, column, pii}") }
        for name in object.keys where !fieldKeys.contains(name) {
            throw DatasetError(.invalid, key: "\(key).\(quotedForMessage(name))", "unknown key (allowed: \(fieldKeys.sorted().joined(separator: ", ")))")
        }
        if object["name"] != nil && object["path"] != nil {
            throw DatasetError(.invalid, key: key, "a field has a name or a path, not both")
        }
        guard case .string(let path)? = object["name"] ?? object["path"] else {
            throw DatasetError(.invalid, key: "\(key).name", "a field needs a name (its dotted path in the record)")
        }
        let type = try fieldType(object["type"], key: "\(key).type")
        let required = try flag(object["required"], key: "\(key).required")
        let column: String?
        switch object["column"] {
        case nil: column = defaultColumn(forPath: path)
        case .null?: column = nil
        case .string(let text)?: column = text
        default: throw DatasetError(.invalid, key: "\(key).column", "must be a column name, or null for a field that is not loaded")
        }
        return Field(path: path, type: type, required: required, column: column, pii: try flag(object["pii"], key: "\(key).pii"))
    }

    private static func column(_ item: JSONValue, key: String) throws(DatasetError) -> Column {
        guard case .object(let object) = item else { throw DatasetError(.invalid, key: key, "a column is a mapping {name, type, required}") }
        for name in object.keys where !columnKeys.contains(name) {
            throw DatasetError(.invalid, key: "\(key).\(quotedForMessage(name))", "unknown key (allowed: name, required, type)")
        }
        guard case .string(let name)? = object["name"] else { throw DatasetError(.invalid, key: "\(key).name", "a column needs a name") }
        return Column(name: name, type: try fieldType(object["type"], key: "\(key).type"), required: try flag(object["required"], key: "\(key).required"))
    }

    private static func fieldType(_ value: JSONValue?, key: String) throws(DatasetError) -> FieldType {
        guard case .string(let text)? = value, let type = FieldType(rawValue: text) else {
            throw DatasetError(.invalid, key: key, "must be one of \(FieldType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return type
    }

    private static func flag(_ value: JSONValue?, key: String) throws(DatasetError) -> Bool {
        switch value {
        case nil: return false
        case .bool(let flag)?: return flag
        default: throw DatasetError(.invalid, key: key, "must be true or false")
        }
    }

    /// The dataset as JSON, in the form ``init(json:name:)`` reads.
    public var json: JSONValue {
        var object: JSONObject = ["name": .string(name)]
        if let description { object["description"] = .string(description) }
        object["fields"] = .array(fields.map { field in
            var item: JSONObject = ["name": .string(field.path), "type": .string(field.type.rawValue)]
            if field.required { item["required"] = true }
            item["column"] = field.column.map(JSONValue.string) ?? .null
            if field.pii { item["pii"] = true }
            return .object(item)
        })
        let derived = fields.compactMap { field in field.column.map { Column(name: $0, type: field.type, required: field.required) } }
        if columns != derived {
            object["columns"] = .array(columns.map { column in
                var item: JSONObject = ["name": .string(column.name), "type": .string(column.type.rawValue)]
                if column.required { item["required"] = true }
                return .object(item)
            })
        }
        object["key"] = .array(key.map(JSONValue.string))
        if let time { object["time"] = .string(time) }
        if let subject { object["subject"] = .string(subject) }
        object["table"] = .string(table.description)
        if !indexes.isEmpty { object["indexes"] = .array(indexes.map { .array($0.map(JSONValue.string)) }) }
        object["chain"] = .array(chain.map(JSONValue.string))
        if !steps.isEmpty { object["steps"] = .object(JSONObject(uncheckedMembers: steps.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })) }
        if detected { object["detected"] = true }
        if unmasked { object["unmasked"] = true }
        if !writers.isEmpty { object["writers"] = .array(writers.map(JSONValue.string)) }
        return .object(object)
    }
}
