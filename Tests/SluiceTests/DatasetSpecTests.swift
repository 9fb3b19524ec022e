import Sluice
import Testing

/// The dataset spec: read from JSON, every name that reaches SQL checked once, the structure
/// checked, and the changes from one version of a dataset to the next. Pure logic.
@Suite("Dataset specs")
struct DatasetSpecTests {
    // MARK: - Helpers

    /// The error `body` throws, or nil when it throws none (and an issue when it throws another).
    static func caught(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> DatasetError? {
        do {
            try body()
            return nil
        } catch let error as DatasetError {
            return error
        } catch {
            Issue.record(error, "not a DatasetError", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// The error reading `json` throws (a test failure when it throws none).
    static func refusal(_ json: JSONValue, name: String? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> DatasetError {
        let error = caught({ _ = try DatasetSpec(json: json, name: name) }, sourceLocation: sourceLocation)
        return try #require(error, "expected a refusal", sourceLocation: sourceLocation)
    }

    /// Checks that reading `json` is refused with `code`, `key` and `column`, and that the
    /// message holds no control character.
    static func expectRefused(_ json: JSONValue, name: String? = nil, _ code: DatasetError.Code, key: String, column: String? = nil,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let error = try refusal(json, name: name, sourceLocation: sourceLocation)
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.key == key, "\(error)", sourceLocation: sourceLocation)
        #expect(error.column == column, "\(error)", sourceLocation: sourceLocation)
        #expect(!hasControlCharacter(error.message), "\(error.message.unicodeScalars.map(\.value))", sourceLocation: sourceLocation)
        #expect(!hasControlCharacter(error.key), sourceLocation: sourceLocation)
    }

    /// Whether `text` holds a control character (C0, DEL or C1: Unicode category Cc).
    static func hasControlCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// A dataset document: `id` (required string) as the key, then `fields`, then `extra` keys.
    static func document(name: String = "orders", fields: [JSONValue] = [], key: JSONValue = ["id"],
                         _ extra: [(String, JSONValue)] = []) -> JSONValue {
        var object: JSONObject = ["name": .string(name)]
        object["fields"] = .array([["name": "id", "type": "string", "required": true]] + fields)
        object["key"] = key
        for (name, value) in extra { object[name] = value }
        return .object(object)
    }

    /// The good example: sensor readings.
    static let readings: JSONValue = [
        "name": "readings",
        "description": "Sensor readings",
        "fields": [
            ["name": "sensor_id", "type": "string", "required": true],
            ["name": "taken_at", "type": "timestamp", "required": true],
            ["name": "reading.celsius", "type": "number"],
            ["name": "reading.raw", "type": "integer", "column": "raw_value"],
            ["name": "debug", "type": "object", "column": .null],
            ["name": "owner.email", "type": "string", "pii": true],
        ],
        "key": ["sensor_id", "taken_at"],
        "time": "taken_at",
        "subject": "owner.email",
        "indexes": [["reading_celsius"], "raw_value"],
    ]

    /// Names that may not name a dataset, a table or a column.
    static let badNames: [String] = [
        "orders; DROP TABLE jobs; --",
        "orders\"",
        "\"orders\"",
        "or'ders",
        "Orders",
        "ORDERS",
        "1orders",
        "select",
        "table",
        "user",
        "order",
        "from",
        "current_user",
        "pg_catalog",
        "pg_x",
        "",
        String(repeating: "a", count: 64),
        String(repeating: "é", count: 32),  // 64 bytes, 32 characters
        "ord\u{0435}rs",  // Cyrillic е
        "orders\u{0}",
        "orders\u{1B}[2J",
        "orders\n",
        "orders\r",
        "orders\t",
        "orders\u{7F}",
        "orders\u{200B}",  // zero-width space
        "\u{FF4F}rders",  // full-width ｏ
        "orde\u{301}rs",  // combining accent
        "orders-2024",
        "orders.x",
        "orders ",
        " orders",
        "or ders",
        "orders/x",
        "orders\\x",
        "orders`",
        "orders$1",
        "orders*",
        "orders%",
    ]

    // MARK: - 1. A good spec

    @Test func aGoodSpecIsReadWithItsDerivedColumns() throws {
        let spec = try DatasetSpec(json: Self.readings)
        #expect(spec.name == "readings")
        #expect(spec.description == "Sensor readings")
        #expect(spec.fields == [
            DatasetSpec.Field(path: "sensor_id", type: .string, required: true, column: "sensor_id"),
            DatasetSpec.Field(path: "taken_at", type: .timestamp, required: true, column: "taken_at"),
            DatasetSpec.Field(path: "reading.celsius", type: .number, column: "reading_celsius"),
            DatasetSpec.Field(path: "reading.raw", type: .integer, column: "raw_value"),
            DatasetSpec.Field(path: "debug", type: .object, column: nil),
            DatasetSpec.Field(path: "owner.email", type: .string, column: "owner_email", pii: true),
        ])
        #expect(spec.fields[2].keys == ["reading", "celsius"])
        // The columns: the loaded fields', in order; `debug` (column: null) is checked, not loaded.
        #expect(spec.columns == [
            DatasetSpec.Column(name: "sensor_id", type: .string, required: true),
            DatasetSpec.Column(name: "taken_at", type: .timestamp, required: true),
            DatasetSpec.Column(name: "reading_celsius", type: .number),
            DatasetSpec.Column(name: "raw_value", type: .integer),
            DatasetSpec.Column(name: "owner_email", type: .string),
        ])
        #expect(spec.column("debug") == nil)
        #expect(spec.field(loadingInto: "raw_value")?.path == "reading.raw")
        #expect(spec.field(at: "debug")?.column == nil)
        #expect(spec.key == ["sensor_id", "taken_at"])
        #expect(spec.time == "taken_at")
        #expect(spec.subject == "owner.email")
        #expect(spec.indexes == [["reading_celsius"], ["raw_value"]])
        #expect(spec.table == DatasetSpec.TableName(schema: "datasets", name: "readings"))
        #expect(spec.table.description == "datasets.readings")
        #expect(spec.chain == ["validate", "enrich", "transform", "load"])
        #expect(spec.chain == DatasetSpec.defaultChain)
        #expect(spec.steps.isEmpty)
        #expect(!spec.detected)
    }

    @Test func theNameMayComeFromTheFileAndTheKeyMayBeOneString() throws {
        let json: JSONValue = ["fields": [["path": "order_id", "type": "integer", "required": true]], "key": "order_id", "table": "sales"]
        let spec = try DatasetSpec(json: json, name: "orders")
        #expect(spec.name == "orders")
        #expect(spec.key == ["order_id"])
        #expect(spec.fields == [DatasetSpec.Field(path: "order_id", type: .integer, required: true, column: "order_id")])
        #expect(spec.table == DatasetSpec.TableName(schema: "datasets", name: "sales"))
        // The same name in the document and from the file is fine.
        #expect(try DatasetSpec(json: Self.document(), name: "orders").name == "orders")
    }

    @Test func aSpecReadBackFromItsJSONIsEqual() throws {
        let spec = try DatasetSpec(json: Self.readings)
        let again = try DatasetSpec(json: spec.json)
        #expect(again == spec)
        #expect(again.json == spec.json)
        // `column: null` survives the round trip as null, not as the default column.
        #expect(spec.json["fields"]?[4]?["column"] == .null)
        #expect(spec.json["table"] == "datasets.readings")
        #expect(spec.json["columns"] == nil)  // derived from the fields
    }

    @Test func aSpecWithDeclaredColumnsAndItsOwnTableRoundTrips() throws {
        let json: JSONValue = [
            "name": "events",
            "fields": [
                ["name": "event_id", "type": "string", "required": true],
                ["name": "payload", "type": "object", "required": true, "column": .null],
            ],
            "columns": [
                ["name": "event_id", "type": "string", "required": true],
                ["name": "kind", "type": "string"],
                ["name": "amount", "type": "number"],
            ],
            "key": ["event_id"],
            "table": "public.events",
            "indexes": [["kind", "amount"]],
            "chain": ["validate", "transform", "load"],
            "steps": ["transform": ["rules": [["set": "kind", "from": "payload.kind"]]]],
            "detected": true,
        ]
        let spec = try DatasetSpec(json: json)
        #expect(spec.table == DatasetSpec.TableName(schema: "public", name: "events"))
        #expect(spec.columns == [
            DatasetSpec.Column(name: "event_id", type: .string, required: true),
            DatasetSpec.Column(name: "kind", type: .string),
            DatasetSpec.Column(name: "amount", type: .number),
        ])
        #expect(spec.fields.map(\.column) == ["event_id", nil])
        #expect(spec.chain == ["validate", "transform", "load"])
        #expect(spec.steps["transform"]?["rules"]?[0]?["set"] == "kind")
        #expect(spec.detected)

        let out = spec.json
        #expect(out["table"] == "public.events")
        #expect(out["columns"]?.arrayValue?.count == 3)
        #expect(out["detected"] == true)
        let again = try DatasetSpec(json: out)
        #expect(again == spec)
        #expect(again.json == out)
    }

    @Test func aSpecBuiltInCodeRoundTrips() throws {
        let spec = DatasetSpec(
            name: "orders",
            fields: [
                .init(path: "order.id", type: .integer, required: true, column: "order_id"),
                .init(path: "total", type: .number, required: true),
                .init(path: "customer", type: .string, column: "customer", pii: true),
            ],
            key: ["order_id"], subject: "customer", description: "Orders")
        #expect(spec.columns.map(\.name) == ["order_id", "customer"])  // `total` has no column
        try spec.validate()
        #expect(try DatasetSpec(json: spec.json) == spec)
    }

    @Test func defaultColumnsJoinKeysWithUnderscoresInLowerCase() {
        #expect(DatasetSpec.defaultColumn(forPath: "reading.celsius") == "reading_celsius")
        #expect(DatasetSpec.defaultColumn(forPath: "Reading.Celsius") == "reading_celsius")
        #expect(DatasetSpec.defaultColumn(forPath: "unit price-eur") == "unit_price_eur")
        #expect(DatasetSpec.defaultColumn(forPath: "a.b.c") == "a_b_c")
        // Still invalid: the spec must then name a column.
        #expect(DatasetSpec.defaultColumn(forPath: "caf\u{E9}") == "caf\u{E9}")
        #expect(DatasetSpec.problem(withName: DatasetSpec.defaultColumn(forPath: "caf\u{E9}")) != nil)
    }

    @Test func aFieldWhoseDefaultColumnIsBadMustNameOne() throws {
        #expect(try DatasetSpec(json: Self.document(fields: [["name": "Total Price", "type": "number"]])).columns.last?.name == "total_price")
        try Self.expectRefused(Self.document(fields: [["name": "prix\u{20AC}", "type": "number"]]), .badName,
                               key: "fields[1].column", column: "prix\u{20AC}")
        try Self.expectRefused(Self.document(fields: [["name": "1st", "type": "number"]]), .badName, key: "fields[1].column", column: "1st")
        try Self.expectRefused(Self.document(fields: [["name": "order", "type": "number"]]), .badName, key: "fields[1].column", column: "order")
        let spec = try DatasetSpec(json: Self.document(fields: [["name": "order", "type": "number", "column": "order_no"]]))
        #expect(spec.columns.map(\.name) == ["id", "order_no"])
    }

    /// Which type widens which (their PostgreSQL types: DatasetValidationTests, beside the store).
    @Test func fieldTypesWiden() {
        for type in DatasetSpec.FieldType.allCases { #expect(type.widens(type)) }
        #expect(DatasetSpec.FieldType.number.widens(.integer))
        #expect(!DatasetSpec.FieldType.integer.widens(.number))
        #expect(DatasetSpec.FieldType.string.widens(.timestamp))
        #expect(!DatasetSpec.FieldType.timestamp.widens(.string))
        #expect(DatasetSpec.FieldType.json.widens(.object))
        #expect(!DatasetSpec.FieldType.object.widens(.json))
        #expect(!DatasetSpec.FieldType.string.widens(.object))
    }

    // MARK: - 2. Names

    @Test(arguments: badNames) func aBadDatasetNameIsRefused(name: String) throws {
        try Self.expectRefused(Self.document(name: name), .badName, key: "name")
        // The same from the file name, and from code.
        try Self.expectRefused(Self.document(name: name), name: name, .badName, key: "name")
        let spec = DatasetSpec(name: name, fields: [.init(path: "id", type: .string, required: true, column: "id")], key: ["id"])
        let caught = Self.caught { try spec.validate() }
        let error = try #require(caught)
        #expect(error.code == .badName && error.key == "name")
        #expect(DatasetSpec.problem(withName: name) != nil)
    }

    @Test(arguments: badNames) func aBadColumnNameIsRefusedWithTheColumnNamed(name: String) throws {
        let json = Self.document(fields: [["name": "amount", "type": "number", "column": .string(name)]])
        try Self.expectRefused(json, .badName, key: "fields[1].column", column: name)
        // Declared in `columns:` instead.
        let declared = Self.document(fields: [["name": "amount", "type": "number", "column": .null]], [
            ("columns", [["name": "id", "type": "string", "required": true], ["name": .string(name), "type": "number"]]),
        ])
        let error = try Self.refusal(declared)
        #expect(error.code == .badName)
        #expect(error.column == name)
        #expect(error.key == "columns[1]")
        #expect(!Self.hasControlCharacter(error.message))
    }

    @Test(arguments: badNames) func aBadTableNameIsRefused(name: String) throws {
        try Self.expectRefused(Self.document([("table", .string("x.\(name)"))]), .badName, key: "table.name")
        // `orders.x` is a schema and a table, both good.
        guard !name.contains(".") else { return }
        try Self.expectRefused(Self.document([("table", .string(name))]), .badName, key: "table.name")
        try Self.expectRefused(Self.document([("table", .string("\(name).x"))]), .badName, key: "table.schema")
    }

    @Test(arguments: ["job_id", "received_at", "loaded_at", "ctid", "xmin", "xmax", "cmin", "cmax", "oid", "tableoid"])
    func aColumnSluiceOrPostgresAddsIsRefused(name: String) throws {
        try Self.expectRefused(Self.document(fields: [["name": "amount", "type": "number", "column": .string(name)]]),
                               .badName, key: "fields[1].column", column: name)
        // Also as a field's default column.
        try Self.expectRefused(Self.document(fields: [["name": .string(name), "type": "string"]]),
                               .badName, key: "fields[1].column", column: name)
    }

    @Test func aLongNameIsCheckedInBytes() throws {
        let longest = String(repeating: "a", count: 63)
        let spec = try DatasetSpec(json: Self.document(name: longest, fields: [["name": "x", "type": "number", "column": .string(longest)]]))
        #expect(spec.name == longest && spec.table.name == longest && spec.columns.last?.name == longest)
        try Self.expectRefused(Self.document(name: longest + "a"), .badName, key: "name")
        // 62 ASCII bytes and one two-byte letter: 64 bytes, refused (for the length or the letter).
        try Self.expectRefused(Self.document(name: String(repeating: "a", count: 62) + "\u{E9}"), .badName, key: "name")
    }

    @Test func messagesEscapeControlCharactersAndAreShort() throws {
        let error = try Self.refusal(Self.document(fields: [["name": "amount", "type": "number", "column": "a\u{0}b\u{1B}c\n"]]))
        #expect(error.code == .badName)
        #expect(error.message.contains("a\\u{0}b\\u{1b}c\\u{a}"))
        #expect(!Self.hasControlCharacter(error.message))
        #expect(!Self.hasControlCharacter(error.description))
        let nameError = try Self.refusal(Self.document(name: "orders\u{0}"))
        #expect(nameError.message.contains("\\u{0}"))
        #expect(!Self.hasControlCharacter(nameError.message))
        // An unknown key is named escaped, and not echoed raw.
        let keyError = try Self.refusal(Self.document([("evil\u{0}\n", 1)]))
        #expect(keyError.code == .invalid)
        #expect(keyError.key == "evil\\u{0}\\u{a}")
        #expect(!Self.hasControlCharacter(keyError.description))
        // A long bad name is cut in the message.
        let long = String(repeating: "X", count: 10_000)
        let longError = try Self.refusal(Self.document(fields: [["name": "amount", "type": "number", "column": .string(long)]]))
        #expect(longError.code == .badName && longError.column == long)
        #expect(longError.message.count < 300)
        // Neither is a name that is not the dataset's the file says.
        let mismatch = try Self.refusal(Self.document(name: "orders\u{7}"), name: "orders")
        #expect(mismatch.code == .invalid && mismatch.key == "name")
        #expect(!Self.hasControlCharacter(mismatch.message))
    }

    @Test func messagesEscapeC1ControlAndInvisibleCharacters() throws {
        // U+0085 (NEL) and U+009B (CSI, a terminal escape on its own) are control characters too;
        // U+200B, U+202E (right-to-left override) and U+2028 hide or move text.
        for (name, escaped) in [("orders\u{85}", "\\u{85}"), ("orders\u{9B}2J", "\\u{9b}"), ("orders\u{200B}", "\\u{200b}"),
                                ("orders\u{202E}x", "\\u{202e}"), ("orders\u{2028}", "\\u{2028}")] {
            let error = try Self.refusal(Self.document(fields: [["name": "amount", "type": "number", "column": .string(name)]]))
            #expect(error.code == .badName && error.column == name && error.key == "fields[1].column")
            #expect(!Self.hasControlCharacter(error.message), "\(error.message.unicodeScalars.map(\.value))")
            #expect(error.message.contains(escaped), "\(error.message)")
        }
    }

    @Test func messagesNamingAFieldPathEscapeC1ControlCharacters() throws {
        // A field's path is refused with a C0 control character but may hold a C1 one (U+0085):
        // every message that names it escapes it.
        let twice = Self.document(fields: [["name": "a\u{85}b", "type": "string", "column": "ab"], ["name": "a\u{85}b", "type": "string", "column": "ab2"]])
        let inside = Self.document(fields: [["name": "a\u{9B}", "type": "object", "column": "a"], ["name": "a\u{9B}.b", "type": "string", "column": "ab"]])
        let time = Self.document(fields: [["name": "t\u{85}", "type": "string", "column": "t"]], [("time", "t\u{85}")])
        let subject = Self.document(fields: [["name": "s\u{85}", "type": "integer", "column": "s"]], [("subject", "s\u{85}")])
        let key = Self.document(fields: [["name": "k\u{85}", "type": "string", "column": "k"]], key: ["k"])
        for (json, errorKey) in [(twice, "fields[2]"), (inside, "fields[2]"), (time, "time"), (subject, "subject"), (key, "key")] {
            let error = try Self.refusal(json)
            #expect(error.code == .invalid && error.key == errorKey)
            #expect(!Self.hasControlCharacter(error.message), "\(error.message.unicodeScalars.map(\.value))")
        }
    }

    @Test func goodNamesHaveNoProblem() {
        for name in ["orders", "_x", "_", "a1_b2", "x", "order_lines", "pg", "pgx", "users", "tables", "selected", "id",
                     String(repeating: "a", count: 63), "_" + String(repeating: "9", count: 62)] {
            #expect(DatasetSpec.problem(withName: name) == nil, "\(name)")
        }
    }

    @Test(arguments: badNames) func badNamesHaveAProblem(name: String) {
        let problem = DatasetSpec.problem(withName: name)
        #expect(problem != nil)
        #expect(!Self.hasControlCharacter(problem ?? ""))
    }

    @Test func problemsSayWhatIsWrong() {
        #expect(DatasetSpec.problem(withName: "") == "is empty")
        #expect(DatasetSpec.problem(withName: "Orders")?.contains("upper-case") == true)
        #expect(DatasetSpec.problem(withName: "1orders") == "starts with a digit")
        #expect(DatasetSpec.problem(withName: "select") == "is a reserved word in SQL")
        #expect(DatasetSpec.problem(withName: "pg_catalog")?.contains("pg_") == true)
        #expect(DatasetSpec.problem(withName: String(repeating: "a", count: 64))?.contains("63 bytes") == true)
        #expect(DatasetSpec.problem(withName: "ord\u{0435}rs")?.contains("U+435") == true)
        #expect(DatasetSpec.problem(withName: "orders;")?.contains("';'") == true)
    }

    // MARK: - 3. How many fields

    static func manyFields(_ count: Int) -> [JSONValue] {
        (0..<count).map { ["name": .string("f\($0)"), "type": "integer"] }
    }

    @Test func tenThousandFieldsAreRefused() throws {
        try Self.expectRefused(Self.document(fields: Self.manyFields(10_000)), .tooManyFields, key: "fields")
        // In code too: refused before any per-field check.
        let fields = (0..<10_000).map { DatasetSpec.Field(path: "f\($0)", type: .integer, required: true) }
        let spec = DatasetSpec(name: "wide", fields: fields, key: ["f0"])
        let caught = Self.caught { try spec.validate() }
        let error = try #require(caught)
        #expect(error.code == .tooManyFields && error.key == "fields")
    }

    @Test func aThousandFieldsAreAcceptedAndOneMoreIsNot() throws {
        let spec = try DatasetSpec(json: Self.document(fields: Self.manyFields(999)))
        #expect(spec.fields.count == DatasetSpec.maxFields)
        #expect(spec.columns.count == 1000)
        try Self.expectRefused(Self.document(fields: Self.manyFields(1000)), .tooManyFields, key: "fields")
    }

    @Test func tooManyDeclaredColumnsAreRefused() throws {
        let columns: [JSONValue] = [["name": "id", "type": "string", "required": true]] + (0..<1000).map { ["name": .string("c\($0)"), "type": "integer"] }
        try Self.expectRefused(Self.document([("columns", .array(columns))]), .tooManyFields, key: "columns")
        let accepted = try DatasetSpec(json: Self.document([("columns", .array(Array(columns.prefix(1000))))]))
        #expect(accepted.columns.count == 1000)
    }

    // MARK: - 4. Structure

    @Test func unknownKeysAreRefused() throws {
        try Self.expectRefused(Self.document([("feilds", [])]), .invalid, key: "feilds")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string", "nullable": true]]), .invalid, key: "fields[1].nullable")
        try Self.expectRefused(Self.document([("columns", [["name": "id", "type": "string", "size": 4]])]), .invalid, key: "columns[0].size")
    }

    @Test func notAMappingIsRefused() throws {
        try Self.expectRefused(["orders"], .invalid, key: "")
        try Self.expectRefused("orders", .invalid, key: "")
        try Self.expectRefused(Self.document(fields: ["x"]), .invalid, key: "fields[1]")
        try Self.expectRefused(["name": "orders", "fields": ["name": "x"], "key": "x"], .invalid, key: "fields")
    }

    @Test func aMissingOrWrongNameIsRefused() throws {
        try Self.expectRefused(["fields": [["name": "id", "type": "string", "required": true]], "key": "id"], .invalid, key: "name")
        try Self.expectRefused(Self.document([("name", 7)]), .invalid, key: "name")
        try Self.expectRefused(Self.document(name: "orders"), name: "invoices", .invalid, key: "name")
        try Self.expectRefused(Self.document(name: "orders"), name: "Orders", .invalid, key: "name")
        try Self.expectRefused(Self.document([("name", 7)]), name: "orders", .invalid, key: "name")
    }

    @Test func aMissingOrBadKeyIsRefused() throws {
        var object = try #require(Self.document().objectValue)
        object["key"] = nil
        try Self.expectRefused(.object(object), .invalid, key: "key")
        try Self.expectRefused(Self.document(key: []), .invalid, key: "key")
        try Self.expectRefused(Self.document(key: 1), .invalid, key: "key")
        try Self.expectRefused(Self.document(key: ["id", 1]), .invalid, key: "key")
        try Self.expectRefused(Self.document(key: ["id", "id"]), .invalid, key: "key")
        try Self.expectRefused(Self.document(key: ["missing"]), .invalid, key: "key", column: "missing")
        // The key names a column, not a field's path.
        try Self.expectRefused(Self.document(fields: [["name": "a.b", "type": "string", "required": true]], key: ["a.b"]),
                               .invalid, key: "key", column: "a.b")
        #expect(try DatasetSpec(json: Self.document(fields: [["name": "a.b", "type": "string", "required": true]], key: ["a_b"])).key == ["a_b"])
        // Nine columns are too many.
        let nine = (0..<9).map { JSONValue.string("k\($0)") }
        let nineFields = (0..<9).map { i -> JSONValue in ["name": .string("k\(i)"), "type": "integer", "required": true] }
        try Self.expectRefused(Self.document(fields: nineFields, key: .array(nine)), .invalid, key: "key")
        #expect(try DatasetSpec(json: Self.document(fields: nineFields, key: .array(Array(nine.prefix(8))))).key.count == 8)
    }

    @Test(arguments: ["object", "array", "json"]) func aKeyColumnHoldingJSONIsRefused(type: String) throws {
        try Self.expectRefused(Self.document(fields: [["name": "payload", "type": .string(type), "required": true]], key: ["payload"]),
                               .invalid, key: "key", column: "payload")
    }

    @Test func aKeyFieldMustBeRequired() throws {
        try Self.expectRefused(Self.document(fields: [["name": "seq", "type": "integer"]], key: ["id", "seq"]),
                               .invalid, key: "key", column: "seq")
        try Self.expectRefused(Self.document(fields: [["name": "seq", "type": "integer", "required": false]], key: ["seq"]),
                               .invalid, key: "key", column: "seq")
    }

    @Test func theTimeFieldMustBeATimestampField() throws {
        try Self.expectRefused(Self.document([("time", "taken_at")]), .invalid, key: "time", column: "taken_at")
        try Self.expectRefused(Self.document(fields: [["name": "taken_at", "type": "string"]], [("time", "taken_at")]),
                               .invalid, key: "time", column: "taken_at")
        try Self.expectRefused(Self.document([("time", 5)]), .invalid, key: "time")
        // `time` names the field's path (not its column), and a field not loaded still has a time.
        let spec = try DatasetSpec(json: Self.document(fields: [["name": "meta.at", "type": "timestamp", "column": .null]], [("time", "meta.at")]))
        #expect(spec.time == "meta.at")
        try Self.expectRefused(Self.document(fields: [["name": "meta.at", "type": "timestamp"]], [("time", "meta_at")]),
                               .invalid, key: "time", column: "meta_at")
        #expect(try DatasetSpec(json: Self.document([("time", .null)])).time == nil)
    }

    @Test func theSubjectMustBeAStringField() throws {
        try Self.expectRefused(Self.document([("subject", "email")]), .invalid, key: "subject", column: "email")
        try Self.expectRefused(Self.document(fields: [["name": "user_no", "type": "integer"]], [("subject", "user_no")]),
                               .invalid, key: "subject", column: "user_no")
        try Self.expectRefused(Self.document([("subject", ["id"])]), .invalid, key: "subject")
        #expect(try DatasetSpec(json: Self.document([("subject", "id")])).subject == "id")
    }

    @Test func aFieldDeclaredTwiceIsRefused() throws {
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string"], ["name": "x", "type": "integer", "column": "x2"]]),
                               .invalid, key: "fields[2]", column: "x")
        try Self.expectRefused(Self.document(fields: [["name": "id", "type": "string"]]), .invalid, key: "fields[1]", column: "id")
    }

    @Test func aFieldInsideAnotherIsRefused() throws {
        try Self.expectRefused(Self.document(fields: [["name": "a", "type": "object"], ["name": "a.b", "type": "string"]]),
                               .invalid, key: "fields[2]", column: "a.b")
        try Self.expectRefused(Self.document(fields: [["name": "a.b.c", "type": "string"], ["name": "a", "type": "object"]]),
                               .invalid, key: "fields[2]", column: "a")
        // A shared prefix that is not a parent is fine.
        let spec = try DatasetSpec(json: Self.document(fields: [["name": "ab", "type": "string"], ["name": "a.b", "type": "string", "column": "a_dot_b"]]))
        #expect(spec.fields.count == 3)
    }

    @Test func aBadFieldPathIsRefused() throws {
        for path in ["", ".a", "a.", "a..b"] {
            try Self.expectRefused(Self.document(fields: [["name": .string(path), "type": "string", "column": "x"]]), .invalid, key: "fields[1]")
        }
        try Self.expectRefused(Self.document(fields: [["name": "a\u{0}b", "type": "string", "column": "x"]]), .invalid, key: "fields[1]")
        try Self.expectRefused(Self.document(fields: [["name": .string(String(repeating: "p", count: 1025)), "type": "string", "column": "x"]]),
                               .invalid, key: "fields[1]")
        try Self.expectRefused(Self.document(fields: [["type": "string"]]), .invalid, key: "fields[1].name")
    }

    @Test func twoFieldsLoadingIntoOneColumnAreRefused() throws {
        try Self.expectRefused(Self.document(fields: [["name": "a.b", "type": "string"], ["name": "a_b", "type": "string"]]),
                               .badName, key: "fields[2].column", column: "a_b")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string", "column": "id"]]),
                               .badName, key: "fields[1].column", column: "id")
    }

    @Test func wrongTypesAreRefused() throws {
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string", "required": "yes"]]), .invalid, key: "fields[1].required")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string", "required": 1]]), .invalid, key: "fields[1].required")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string", "pii": "true"]]), .invalid, key: "fields[1].pii")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "float"]]), .invalid, key: "fields[1].type")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "String"]]), .invalid, key: "fields[1].type")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": 3]]), .invalid, key: "fields[1].type")
        try Self.expectRefused(Self.document(fields: [["name": "x"]]), .invalid, key: "fields[1].type")
        try Self.expectRefused(Self.document(fields: [["name": "x", "type": "string", "column": 3]]), .invalid, key: "fields[1].column")
        try Self.expectRefused(Self.document(fields: [["name": 3, "type": "string"]]), .invalid, key: "fields[1].name")
        try Self.expectRefused(Self.document([("columns", "id")]), .invalid, key: "columns")
        try Self.expectRefused(Self.document([("columns", [["name": "id", "type": "text"]])]), .invalid, key: "columns[0].type")
        try Self.expectRefused(Self.document([("columns", [["name": "id", "type": "string", "required": "no"]])]), .invalid, key: "columns[0].required")
        try Self.expectRefused(Self.document([("table", 1)]), .invalid, key: "table")
        try Self.expectRefused(Self.document([("indexes", "id")]), .invalid, key: "indexes")
        try Self.expectRefused(Self.document([("indexes", [1])]), .invalid, key: "indexes[0]")
        try Self.expectRefused(Self.document([("indexes", [["id", 1]])]), .invalid, key: "indexes[0]")
        try Self.expectRefused(Self.document([("chain", "load")]), .invalid, key: "chain")
        try Self.expectRefused(Self.document([("chain", ["validate", 2, "load"])]), .invalid, key: "chain")
        try Self.expectRefused(Self.document([("steps", ["load"])]), .invalid, key: "steps")
        try Self.expectRefused(Self.document([("steps", ["load": "fast"])]), .invalid, key: "steps.load")
        try Self.expectRefused(Self.document([("description", 1)]), .invalid, key: "description")
    }

    @Test func aDetectedFlagOfTheWrongTypeIsRefused() throws {
        try Self.expectRefused(Self.document([("detected", "yes")]), .invalid, key: "detected")
        try Self.expectRefused(Self.document([("detected", 1)]), .invalid, key: "detected")
        #expect(try DatasetSpec(json: Self.document([("detected", false)])).detected == false)
    }

    @Test func theChainMustEndWithLoad() throws {
        try Self.expectRefused(Self.document([("chain", ["validate", "transform"])]), .invalid, key: "chain")
        try Self.expectRefused(Self.document([("chain", [])]), .invalid, key: "chain")
        try Self.expectRefused(Self.document([("chain", ["load", "transform"])]), .invalid, key: "chain")
        try Self.expectRefused(Self.document([("chain", ["val idate", "load"])]), .invalid, key: "chain[0]")
        try Self.expectRefused(Self.document([("chain", ["validate", "", "load"])]), .invalid, key: "chain[1]")
        try Self.expectRefused(Self.document([("chain", ["trans;form", "load"])]), .invalid, key: "chain[0]")
        #expect(try DatasetSpec(json: Self.document([("chain", ["load"])])).chain == ["load"])
        #expect(try DatasetSpec(json: Self.document([("chain", ["pii-mask", "my_fn2", "load"])])).chain == ["pii-mask", "my_fn2", "load"])
    }

    /// A chain is a pipeline (issue 31, finding 5): no stage twice (records would go round it
    /// for ever, and load twice would load them before the rest ran), at most 16 stages.
    @Test func aChainNamesEachStageOnce() throws {
        try Self.expectRefused(Self.document([("chain", ["validate", "enrich", "validate", "load"])]), .invalid, key: "chain[2]")
        try Self.expectRefused(Self.document([("chain", ["validate", "load", "load"])]), .invalid, key: "chain[2]")
        try Self.expectRefused(Self.document([("chain", ["validate", "load", "enrich", "load"])]), .invalid, key: "chain[3]")
        try Self.expectRefused(Self.document([("chain", .array((0..<16).map { .string("f\($0)") } + ["load"]))]), .invalid, key: "chain")
    }

    /// `unmasked` (a file's say-so that the chain may start without pii-mask) and `writers`
    /// (roles that may change the dataset) read and write back.
    @Test func unmaskedAndWritersReadAndWriteBack() throws {
        let spec = try DatasetSpec(json: Self.document([("unmasked", true), ("writers", ["sales", "data.eng"])]))
        #expect(spec.unmasked)
        #expect(spec.writers == ["sales", "data.eng"])
        #expect(try DatasetSpec(json: spec.json) == spec)
        #expect(try DatasetSpec(json: Self.document()).unmasked == false)
        try Self.expectRefused(Self.document([("unmasked", "yes")]), .invalid, key: "unmasked")
        try Self.expectRefused(Self.document([("writers", "sales")]), .invalid, key: "writers")
        try Self.expectRefused(Self.document([("writers", ["Sales"])]), .invalid, key: "writers")
        try Self.expectRefused(Self.document([("writers", ["x,admin"])]), .invalid, key: "writers")
    }

    @Test func stepsMustNameAFunctionInTheChain() throws {
        try Self.expectRefused(Self.document([("steps", ["notify": ["url": "http://x"]])]), .invalid, key: "steps.notify")
        try Self.expectRefused(Self.document([("chain", ["validate", "load"]), ("steps", ["transform": ["rules": []]])]),
                               .invalid, key: "steps.transform")
        let spec = try DatasetSpec(json: Self.document([("steps", ["transform": ["rules": []]])]))
        #expect(spec.steps == ["transform": ["rules": []]])
        // `ingest` comes before every chain.
        let ingest = try DatasetSpec(json: Self.document([("chain", ["load"]), ("steps", ["ingest": ["csv": ["delimiter": ";"]]])]))
        #expect(ingest.steps["ingest"]?["csv"]?["delimiter"] == ";")
        #expect(try DatasetSpec(json: ingest.json) == ingest)
    }

    @Test func indexesMustNameColumns() throws {
        try Self.expectRefused(Self.document([("indexes", [["nope"]])]), .invalid, key: "indexes[0]", column: "nope")
        try Self.expectRefused(Self.document([("indexes", [[]])]), .invalid, key: "indexes[0]")
        try Self.expectRefused(Self.document([("indexes", [["id", "id"]])]), .invalid, key: "indexes[0]")
        let tooMany = JSONValue.array((0..<33).map { _ in ["id"] })
        try Self.expectRefused(Self.document([("indexes", tooMany)]), .invalid, key: "indexes")
    }

    @Test func aFieldWithNoColumnDoesNotNeedADeclaredOne() throws {
        let spec = try DatasetSpec(json: Self.document(fields: [["name": "raw", "type": "json", "column": .null]]))
        #expect(spec.columns.map(\.name) == ["id"])
    }

    @Test func aLoadedFieldMustLoadIntoADeclaredColumn() throws {
        // With `columns:` declared, a field's column must be one of them: not another, and not
        // one Sluice or PostgreSQL adds itself.
        for column in ["undeclared", "job_id", "ctid"] {
            let json = Self.document(fields: [["name": "x", "type": "string", "column": .string(column)]], [
                ("columns", [["name": "id", "type": "string", "required": true]]),
            ])
            try Self.expectRefused(json, .invalid, key: "fields[1].column", column: column)
        }
        // A bad name is still a bad name.
        let bad = Self.document(fields: [["name": "x", "type": "string", "column": "X"]], [
            ("columns", [["name": "id", "type": "string", "required": true], ["name": "X", "type": "string"]]),
        ])
        try Self.expectRefused(bad, .badName, key: "fields[1].column", column: "X")
    }

    @Test func twoFieldsLoadingIntoOneDeclaredColumnAreRefused() throws {
        let json = Self.document(fields: [["name": "a", "type": "string", "column": "x"], ["name": "b", "type": "integer", "column": "x"]], [
            ("columns", [["name": "id", "type": "string", "required": true], ["name": "x", "type": "string"]]),
        ])
        try Self.expectRefused(json, .badName, key: "fields[2].column", column: "x")
        // A column declared twice is named at its declaration.
        let twice = Self.document([("columns", [["name": "id", "type": "string", "required": true], ["name": "id", "type": "string"]])])
        try Self.expectRefused(twice, .badName, key: "columns[1]", column: "id")
    }

    @Test func aBadColumnAfterAnUnloadedFieldIsReportedAtItsField() throws {
        // A field with `column: null` before it shifts the columns' positions from the fields'.
        let json = Self.document(fields: [["name": "raw", "type": "json", "column": .null], ["name": "amount", "type": "number", "column": "Amount"]])
        try Self.expectRefused(json, .badName, key: "fields[2].column", column: "Amount")
        let system = Self.document(fields: [["name": "raw", "type": "json", "column": .null], ["name": "loaded", "type": "timestamp", "column": "loaded_at"]])
        try Self.expectRefused(system, .badName, key: "fields[2].column", column: "loaded_at")
    }

    // MARK: - 5. Evolution

    static let base = DatasetSpec(
        name: "readings",
        fields: [
            .init(path: "id", type: .string, required: true, column: "id"),
            .init(path: "taken_at", type: .timestamp, required: true, column: "taken_at"),
            .init(path: "value", type: .number, column: "value"),
            .init(path: "count", type: .integer, column: "count"),
            .init(path: "label", type: .string, column: "label"),
        ],
        key: ["id"], indexes: [["taken_at"]])

    static func changed(_ change: (inout DatasetSpec) -> Void) -> DatasetSpec {
        var spec = base
        change(&spec)
        spec = DatasetSpec(name: spec.name, fields: spec.fields, key: spec.key, time: spec.time, table: spec.table, indexes: spec.indexes)
        return spec
    }

    static func incompatibility(_ new: DatasetSpec, migration: Bool = false) throws -> DatasetError {
        let error = caught { _ = try new.changes(from: base, migration: migration) }
        return try #require(error)
    }

    @Test func theSameSpecChangesNothing() throws {
        try Self.base.validate()
        #expect(try Self.base.changes(from: Self.base) == [])
        #expect(try Self.base.changes(from: Self.base, migration: true) == [])
        // A field moved in the record that still loads into the same column changes nothing either.
        let moved = Self.changed { $0.fields[2] = .init(path: "reading.value", type: .number, column: "value") }
        #expect(try moved.changes(from: Self.base) == [])
    }

    @Test func anOptionalColumnIsAdded() throws {
        let new = Self.changed { $0.fields.append(.init(path: "note", type: .string, column: "note")) }
        #expect(try new.changes(from: Self.base) == [.addColumn(.init(name: "note", type: .string, required: false))])
    }

    @Test func aRequiredColumnNeedsAMigration() throws {
        let new = Self.changed { $0.fields.append(.init(path: "unit", type: .string, required: true, column: "unit")) }
        let error = try Self.incompatibility(new)
        #expect(error.code == .incompatible)
        #expect(error.column == "unit")
        #expect(error.key == "fields")
        #expect(try new.changes(from: Self.base, migration: true) == [.addColumn(.init(name: "unit", type: .string, required: true))])
    }

    @Test(arguments: [
        ("value", DatasetSpec.FieldType.integer),  // number → integer
        ("label", .integer),  // string → integer
        ("label", .boolean),
        ("count", .boolean),
        ("taken_at", .integer),
    ])
    func aNarrowerTypeNeedsAMigration(column: String, to type: DatasetSpec.FieldType) throws {
        let new = Self.changed { spec in
            let index = spec.fields.firstIndex { $0.path == column }!
            spec.fields[index].type = type
        }
        let error = try Self.incompatibility(new)
        #expect(error.code == .incompatible)
        #expect(error.column == column)
        #expect(error.message.contains(column))
        let from = try #require(Self.base.column(column)).type
        #expect(try new.changes(from: Self.base, migration: true) == [.changeType(column: column, from: from, to: type)])
    }

    @Test(arguments: [
        ("count", DatasetSpec.FieldType.integer, DatasetSpec.FieldType.number),
        ("count", .integer, .string),
        ("value", .number, .string),
        ("taken_at", .timestamp, .string),
    ])
    func aWiderTypeChangesTheColumn(column: String, from: DatasetSpec.FieldType, to: DatasetSpec.FieldType) throws {
        let new = Self.changed { spec in
            let index = spec.fields.firstIndex { $0.path == column }!
            spec.fields[index].type = to
        }
        #expect(try new.changes(from: Self.base) == [.changeType(column: column, from: from, to: to)])
    }

    @Test func anOptionalColumnMadeRequiredNeedsAMigration() throws {
        let new = Self.changed { $0.fields[2].required = true }
        let error = try Self.incompatibility(new)
        #expect(error.code == .incompatible && error.column == "value")
        #expect(try new.changes(from: Self.base, migration: true) == [])
        // The other way is always fine.
        let relaxed = Self.changed { $0.fields[1].required = false }
        #expect(try relaxed.changes(from: Self.base) == [])
    }

    @Test func aRemovedColumnNeedsAMigration() throws {
        let new = Self.changed { $0.fields.removeAll { $0.path == "label" } }
        let error = try Self.incompatibility(new)
        #expect(error.code == .incompatible && error.column == "label")
        #expect(try new.changes(from: Self.base, migration: true) == [])
        // A field no longer loaded is a removed column too.
        let unloaded = Self.changed { $0.fields[4].column = nil }
        #expect(try Self.incompatibility(unloaded).column == "label")
    }

    @Test func theKeyNameAndTableNeverChange() throws {
        let key = Self.changed { $0.key = ["id", "taken_at"] }
        let keyError = try Self.incompatibility(key)
        #expect(keyError.code == .incompatible && keyError.key == "key" && keyError.column == "id")
        #expect(try Self.incompatibility(key, migration: true).code == .incompatible)
        let renamed = Self.changed { $0.name = "readings2" }
        let nameError = try Self.incompatibility(renamed, migration: true)
        #expect(nameError.code == .incompatible && nameError.key == "name")
        let moved = Self.changed { $0.table = .init(schema: "public", name: "readings") }
        let tableError = try Self.incompatibility(moved, migration: true)
        #expect(tableError.code == .incompatible && tableError.key == "table")
    }

    @Test func aNewIndexIsAdded() throws {
        let new = Self.changed { $0.indexes.append(["label", "count"]) }
        #expect(try new.changes(from: Self.base) == [.addIndex(["label", "count"])])
        // An index dropped from the spec is left alone.
        let fewer = Self.changed { $0.indexes = [] }
        #expect(try fewer.changes(from: Self.base) == [])
    }

    @Test func severalChangesComeInOrder() throws {
        let new = Self.changed { spec in
            spec.fields[3].type = .number
            spec.fields.append(.init(path: "note", type: .string, column: "note"))
            spec.indexes.append(["note"])
        }
        #expect(try new.changes(from: Self.base) == [
            .changeType(column: "count", from: .integer, to: .number),
            .addColumn(.init(name: "note", type: .string)),
            .addIndex(["note"]),
        ])
    }

    @Test func evolutionWorksOnSpecsReadFromJSON() throws {
        let old = try DatasetSpec(json: Self.readings)
        var fields = try #require(Self.readings["fields"]?.arrayValue)
        fields.append(["name": "reading.humidity", "type": "number"])
        var object = try #require(Self.readings.objectValue)
        object["fields"] = .array(fields)
        let new = try DatasetSpec(json: .object(object))
        #expect(try new.changes(from: old) == [.addColumn(.init(name: "reading_humidity", type: .number))])
    }
}
