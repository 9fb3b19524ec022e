/// A dataset: records of one shape, checked against its fields, loaded into its own table.
///
/// Declared in a file (`datasets/orders.yaml`), sent to `POST /api/v1/datasets`, or detected
/// from a first upload. Every name that reaches SQL (the dataset's, its table's, its columns')
/// is checked here, once: lowercase ASCII letters, digits and `_`, starting with a letter or
/// `_`, at most 63 bytes (PostgreSQL truncates longer names, and two long names would become
/// one), not an SQL reserved word, not a column Sluice adds itself. The statements still quote
/// every name; the check keeps the names a user types in SQL plain.
///
/// ```yaml
/// name: readings
/// fields:
///   - {name: sensor_id, type: string, required: true}
///   - {name: taken_at, type: timestamp, required: true}
///   - {name: reading.celsius, type: number, column: celsius}
/// key: [sensor_id, taken_at]
/// time: taken_at
/// ```
public struct DatasetSpec: Sendable, Equatable {
    /// The type of a field, and of the column it loads into.
    public enum FieldType: String, Sendable, CaseIterable {
        case string, integer, number, boolean, timestamp, object, array, json

        /// Whether a column of type `self` can take every value of a column of type `old`
        /// without loss (an existing column's type may only widen).
        public func widens(_ old: FieldType) -> Bool {
            if self == old { return true }
            switch (old, self) {
            case (.integer, .number): return true
            case (.integer, .string), (.number, .string), (.boolean, .string), (.timestamp, .string): return true
            case (.object, .json), (.array, .json): return true
            default: return false
            }
        }
    }

    /// One field of a record: where it is (a dotted path), its type, whether it must be there,
    /// the column it loads into.
    public struct Field: Sendable, Equatable {
        /// The dotted path in the record (`reading.celsius`).
        public var path: String
        public var type: FieldType
        public var required: Bool
        /// The column it loads into (default: the path with `.` as `_`); nil when the field is
        /// checked but not loaded (`column: null`).
        public var column: String?
        /// Holds personal data (masked before anything stores it).
        public var pii: Bool

        public init(path: String, type: FieldType, required: Bool = false, column: String? = nil, pii: Bool = false) {
            self.path = path
            self.type = type
            self.required = required
            self.column = column
            self.pii = pii
        }

        /// The path's keys.
        public var keys: [String] { path.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }
    }

    /// A column of the dataset's table.
    public struct Column: Sendable, Equatable {
        public var name: String
        public var type: FieldType
        public var required: Bool

        public init(name: String, type: FieldType, required: Bool = false) {
            self.name = name
            self.type = type
            self.required = required
        }
    }

    /// Where the rows go: a table, in a PostgreSQL schema.
    public struct TableName: Sendable, Equatable, CustomStringConvertible {
        public var schema: String
        public var name: String

        public init(schema: String, name: String) {
            self.schema = schema
            self.name = name
        }

        public var description: String { "\(schema).\(name)" }
    }

    public var name: String
    public var description: String?
    public var fields: [Field]
    /// The table's columns: the fields' (in order), unless declared (`columns:`, when a
    /// transform makes other columns than the fields).
    public var columns: [Column]
    /// The columns whose values identify a record: the table's primary key, and what
    /// deduplication compares.
    public var key: [String]
    /// The field holding the record's event time (freshness is checked by it), if any.
    public var time: String?
    /// The field naming the person a record is about (consent, erasure), if any.
    public var subject: String?
    public var table: TableName
    /// Secondary indexes, each a list of columns.
    public var indexes: [[String]]
    /// The functions records flow through after ingest, in order.
    public var chain: [String]
    /// Per-function settings for this dataset (`steps: {transform: {rules: […]}}`): a function
    /// of the chain, or `ingest`.
    public var steps: [String: JSONValue]
    /// Whether the fields were detected from an upload rather than declared.
    public var detected: Bool
    /// Whether the chain may start with a function that does not mask personal data (no
    /// `pii-mask`): only a dataset file may say so (`unmasked: true`), never the API.
    public var unmasked: Bool = false
    /// Roles that may change the spec and replace or delete records besides the dataset's
    /// owner and `admin` (`writers: [sales]`).
    public var writers: [String] = []

    /// The PostgreSQL schema of tables of datasets made through the API or detected.
    public static let defaultSchema = "datasets"
    /// The default chain.
    public static let defaultChain = ["validate", "enrich", "transform", "load"]
    /// The most functions a chain may name.
    public static let maxChainLength = 16
    /// The most fields (and columns) a dataset may have: PostgreSQL allows 1,600 columns a
    /// table, and a row must fit a page; Sluice adds three.
    public static let maxFields = 1000
    /// The longest name PostgreSQL keeps whole (NAMEDATALEN - 1).
    public static let maxNameBytes = 63
    /// The columns every dataset table has besides its own: the job that loaded the row, when
    /// the upload was accepted, when it was loaded.
    public static let systemColumns: [String] = ["job_id", "received_at", "loaded_at"]

    public init(name: String, fields: [Field], columns: [Column]? = nil, key: [String], time: String? = nil, subject: String? = nil,
                table: TableName? = nil, indexes: [[String]] = [], chain: [String] = DatasetSpec.defaultChain,
                steps: [String: JSONValue] = [:], description: String? = nil, detected: Bool = false) {
        self.name = name
        self.fields = fields
        self.columns = columns ?? fields.compactMap { field in field.column.map { Column(name: $0, type: field.type, required: field.required) } }
        self.key = key
        self.time = time
        self.subject = subject
        self.table = table ?? TableName(schema: Self.defaultSchema, name: name)
        self.indexes = indexes
        self.chain = chain
        self.steps = steps
        self.description = description
        self.detected = detected
    }

    /// The column `name`.
    public func column(_ name: String) -> Column? { columns.first { $0.name == name } }

    /// The field that loads into column `name`.
    public func field(loadingInto name: String) -> Field? { fields.first { $0.column == name } }

    /// The field at `path`.
    public func field(at path: String) -> Field? { fields.first { $0.path == path } }

}

// MARK: - Errors

/// A dataset that cannot be accepted: a stable code, the key at fault (`fields[3].column`), and
/// a message that names the column or field but never a record's value.
public struct DatasetError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not the expected structure (a key missing, a list where a mapping belongs, an unknown key).
        case invalid = "dataset_invalid"
        /// A dataset, table or column name that cannot be used.
        case badName = "dataset_bad_name"
        /// More fields than a table can hold.
        case tooManyFields = "dataset_too_many_fields"
        /// A change that would break rows already loaded.
        case incompatible = "schema_incompatible"
        /// A dataset of this name exists already.
        case exists = "dataset_exists"
        /// As many datasets as the catalog may hold exist already.
        case limitReached = "dataset_limit_reached"
    }

    public var code: Code
    public var key: String
    public var message: String
    /// The column or field the error is about, when there is one.
    public var column: String?

    public init(_ code: Code, key: String, _ message: String, column: String? = nil) {
        self.code = code
        self.key = key
        self.message = message
        self.column = column
    }

    public var description: String { key.isEmpty ? message : "\(key): \(message)" }
}

// MARK: - Names

extension DatasetSpec {
    /// Why `name` cannot name a dataset, a table or a column, or nil when it can.
    public static func problem(withName name: String) -> String? {
        guard !name.isEmpty else { return "is empty" }
        guard name.utf8.count <= maxNameBytes else { return "is longer than \(maxNameBytes) bytes" }
        for scalar in name.unicodeScalars {
            guard scalar.isASCII else {
                return "holds a character outside ASCII (U+\(String(scalar.value, radix: 16, uppercase: true))); use a-z, 0-9 and _"
            }
            let c = UInt8(scalar.value)
            let ok = (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F
            guard ok else {
                if c >= 0x41 && c <= 0x5A { return "holds an upper-case letter; use a-z, 0-9 and _" }
                return "holds '\(Self.printable(c))'; use a-z, 0-9 and _"
            }
        }
        if let first = name.utf8.first, first >= 0x30 && first <= 0x39 { return "starts with a digit" }
        if SQLReservedWords.all.contains(name) { return "is a reserved word in SQL" }
        if name.hasPrefix("pg_") { return "starts with pg_ (reserved by PostgreSQL)" }
        return nil
    }

    private static func printable(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\u{\(String(byte, radix: 16))}"
    }

    /// The PostgreSQL system columns every table has: a user column cannot take their names.
    static let postgresSystemColumns: Set<String> = ["oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"]

    /// The column a field at `path` loads into by default: its keys joined with `_`,
    /// lowercased, spaces and `-` as `_`. May still be invalid (then the spec must name one).
    public static func defaultColumn(forPath path: String) -> String {
        var out = ""
        for scalar in path.unicodeScalars {
            switch scalar {
            case ".", " ", "-": out.append("_")
            default:
                if scalar.isASCII, scalar.properties.isUppercase { out.unicodeScalars.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars) }
                else { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }
}

// MARK: - Checks

extension DatasetSpec {
    /// Checks every name and reference: the names, the columns (none twice, none Sluice's
    /// own), the key, time and subject fields, the indexes, the chain.
    /// - Throws: ``DatasetError``.
    public func validate() throws(DatasetError) {
        if let problem = Self.problem(withName: name) {
            throw DatasetError(.badName, key: "name", "the dataset name \(problem)")
        }
        for (label, part) in [("table.schema", table.schema), ("table.name", table.name)] {
            if let problem = Self.problem(withName: part) { throw DatasetError(.badName, key: label, "the table name \(problem)") }
        }
        guard !fields.isEmpty else { throw DatasetError(.invalid, key: "fields", "a dataset needs at least one field") }
        guard fields.count <= Self.maxFields else {
            throw DatasetError(.tooManyFields, key: "fields", "\(fields.count) fields; a dataset may have at most \(Self.maxFields)")
        }
        guard columns.count <= Self.maxFields else {
            throw DatasetError(.tooManyFields, key: "columns", "\(columns.count) columns; a dataset may have at most \(Self.maxFields)")
        }
        var paths: Set<String> = []
        for (index, field) in fields.enumerated() {
            let key = "fields[\(index)]"
            guard !field.path.isEmpty, !field.keys.contains(where: \.isEmpty) else {
                throw DatasetError(.invalid, key: key, "a field's path must be dotted keys, none empty")
            }
            guard field.path.utf8.count <= 1024, !field.path.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
                throw DatasetError(.invalid, key: key, "a field's path must be at most 1024 bytes without control characters")
            }
            guard paths.insert(field.path).inserted else {
                throw DatasetError(.invalid, key: key, "the field '\(Self.quotedForMessage(field.path))' is declared twice", column: field.path)
            }
            // A field is not also inside another (a.b and a.b.c): an object field is one column.
            for other in paths where field.path.hasPrefix(other + ".") || other.hasPrefix(field.path + ".") {
                throw DatasetError(.invalid, key: key, "the field '\(Self.quotedForMessage(field.path))' is inside '\(Self.quotedForMessage(other))' or holds it", column: field.path)
            }
        }
        // A field's column, and the key that names it: the field's own `column` when the
        // columns are the fields', else the declared column.
        let derived = fields.compactMap { field in field.column.map { Column(name: $0, type: field.type, required: field.required) } }
        let declared = columns != derived
        func location(ofColumn index: Int) -> String {
            guard !declared, let field = fields.firstIndex(where: { $0.column == columns[index].name }) else { return "columns[\(index)]" }
            return "fields[\(field)].column"
        }
        var loadedBy: [String: Int] = [:]
        for (index, field) in fields.enumerated() {
            guard let column = field.column else { continue }
            if let problem = Self.problem(withName: column) {
                throw DatasetError(.badName, key: "fields[\(index)].column", "the column name '\(Self.quotedForMessage(column))' \(problem)", column: column)
            }
            if loadedBy[column] != nil {
                throw DatasetError(.badName, key: "fields[\(index)].column", "two fields load into the column '\(column)'", column: column)
            }
            loadedBy[column] = index
        }
        var names: Set<String> = []
        for (index, column) in columns.enumerated() {
            let key = location(ofColumn: index)
            if let problem = Self.problem(withName: column.name) {
                throw DatasetError(.badName, key: key, "the column name '\(Self.quotedForMessage(column.name))' \(problem)", column: column.name)
            }
            guard !Self.systemColumns.contains(column.name), !Self.postgresSystemColumns.contains(column.name) else {
                throw DatasetError(.badName, key: key, "'\(column.name)' is a column Sluice or PostgreSQL adds itself; name it otherwise", column: column.name)
            }
            guard names.insert(column.name).inserted else {
                throw DatasetError(.badName, key: key, "two fields load into the column '\(column.name)'", column: column.name)
            }
        }
        // With declared columns, a field that loads names one of them.
        for (index, field) in fields.enumerated() {
            guard let column = field.column, !names.contains(column) else { continue }
            throw DatasetError(.invalid, key: "fields[\(index)].column", "the field '\(Self.quotedForMessage(field.path))' loads into '\(column)', which is not a column",
                               column: column)
        }
        guard !key.isEmpty else { throw DatasetError(.invalid, key: "key", "a dataset needs a key: the column(s) that identify a record") }
        guard key.count <= 8, Set(key).count == key.count else { throw DatasetError(.invalid, key: "key", "at most 8 key columns, each once") }
        for name in key {
            guard let column = column(name) else {
                throw DatasetError(.invalid, key: "key", "the key column '\(Self.quotedForMessage(name))' is not a column", column: name)
            }
            guard column.type != .object, column.type != .array, column.type != .json else {
                throw DatasetError(.invalid, key: "key", "the key column '\(name)' holds JSON; a key is a string, number, boolean or timestamp", column: name)
            }
            if let field = field(loadingInto: name), !field.required {
                throw DatasetError(.invalid, key: "key", "the key field '\(Self.quotedForMessage(field.path))' must be required", column: name)
            }
        }
        if let time {
            guard let field = field(at: time) else { throw DatasetError(.invalid, key: "time", "'\(Self.quotedForMessage(time))' is not a field", column: time) }
            guard field.type == .timestamp else { throw DatasetError(.invalid, key: "time", "the time field '\(Self.quotedForMessage(time))' must have type timestamp", column: time) }
        }
        for (index, field) in fields.enumerated() where field.pii && field.type != .string {
            throw DatasetError(.invalid, key: "fields[\(index)].pii", "a personal-data field holds a string (it is stored as its pseudonym)",
                               column: field.column ?? field.path)
        }
        if let subject {
            guard let field = field(at: subject) else {
                throw DatasetError(.invalid, key: "subject", "'\(Self.quotedForMessage(subject))' is not a field", column: subject)
            }
            guard field.type == .string else { throw DatasetError(.invalid, key: "subject", "the subject field '\(Self.quotedForMessage(subject))' must have type string", column: subject) }
        }
        guard indexes.count <= 32 else { throw DatasetError(.invalid, key: "indexes", "at most 32 indexes") }
        for (index, columns) in indexes.enumerated() {
            guard !columns.isEmpty, columns.count <= 8, Set(columns).count == columns.count else {
                throw DatasetError(.invalid, key: "indexes[\(index)]", "an index is 1 to 8 columns, each once")
            }
            for name in columns where column(name) == nil {
                throw DatasetError(.invalid, key: "indexes[\(index)]", "'\(Self.quotedForMessage(name))' is not a column", column: name)
            }
        }
        guard !chain.isEmpty, chain.last == "load" else {
            throw DatasetError(.invalid, key: "chain", "the chain must end with load")
        }
        guard chain.count <= Self.maxChainLength else {
            throw DatasetError(.invalid, key: "chain", "a chain has at most \(Self.maxChainLength) functions")
        }
        var seen: Set<String> = []
        for (index, step) in chain.enumerated() {
            guard step.utf8.count <= 100, step.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_".unicodeScalars.contains($0)) }),
                  !step.isEmpty
            else { throw DatasetError(.invalid, key: "chain[\(index)]", "'\(Self.quotedForMessage(step))' is not a function name") }
            // A stage named twice would send records round the chain for ever (and `load`
            // twice, or before the end, would load them before the rest had run).
            guard seen.insert(step).inserted else {
                throw DatasetError(.invalid, key: "chain[\(index)]", "'\(step)' is in the chain twice; each function is one stage")
            }
        }
        guard writers.count <= 32, writers.allSatisfy(Self.isRoleName) else {
            throw DatasetError(.invalid, key: "writers", "must be at most 32 role names (1 to 64 of a-z, 0-9, _, ., -)")
        }
        // `ingest` is before every chain (its CSV columns, say).
        for function in steps.keys.sorted() where !chain.contains(function) && function != "ingest" {
            throw DatasetError(.invalid, key: "steps.\(Self.quotedForMessage(function))", "'\(Self.quotedForMessage(function))' is not in the chain")
        }
    }

    /// Whether `name` can be a role's name: 1 to 64 of a-z, 0-9, `_`, `.`, `-`.
    public static func isRoleName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { $0 &- 97 < 26 || $0 &- 48 < 10 || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// `text` for an error message: at most 80 characters, control characters escaped (a
    /// name may come from anyone).
    public static func quotedForMessage(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(80) {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.properties.generalCategory == .format
                || scalar.properties.generalCategory == .lineSeparator || scalar.properties.generalCategory == .paragraphSeparator {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return text.unicodeScalars.count > 80 ? out + "…" : out
    }
}
