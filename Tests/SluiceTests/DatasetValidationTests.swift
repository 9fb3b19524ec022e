import Sluice
@testable import SluiceFunctions
import Testing

/// validate's check of a dataset's fields (`shape: fields`), pure.
@Suite("Dataset validation")
struct DatasetValidationTests {
    static let spec: DatasetSpec = {
        let json: JSONValue = [
            "name": "readings",
            "fields": [
                ["name": "sensor_id", "type": "string", "required": true],
                ["name": "taken_at", "type": "timestamp", "required": true],
                ["name": "reading.celsius", "type": "number", "required": true, "column": "celsius"],
                ["name": "reading.count", "type": "integer", "column": "count"],
                ["name": "ok", "type": "boolean"],
            ],
            "key": ["sensor_id", "taken_at"],
            "time": "taken_at",
        ]
        return try! DatasetSpec(json: json)
    }()
    static let now = Timestamp.milliseconds("2026-12-02T14:10:00Z")!

    func check(_ text: String) throws -> (EventShapeValidator.Verdict, JSONValue?) {
        let plan = try ValidationPlan(config: [:], file: "datasets/readings.yaml", spec: Self.spec)
        return plan.check(try JSONParser().parse(Array(text.utf8)), now: Self.now)
    }

    @Test func aRecordOfTheRightTypesPassesUnchanged() throws {
        let (verdict, read) = try check(#"{"sensor_id":"s-0","taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":20.5,"count":3},"ok":true}"#)
        #expect(verdict == .valid(eventID: "s-0\u{1F}2026-12-02T14:00:00Z", timestamp: Timestamp.milliseconds("2026-12-02T14:00:00Z")!))
        // Nothing to change: no new record (not a JSON null, which would replace the record).
        #expect(read == Optional<JSONValue>.none)
    }

    @Test func textValuesAreReadAsTheirFieldsTypes() throws {
        let (verdict, read) = try check(#"{"sensor_id":"s-0","taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":" 20.5","count":"3"},"ok":"TRUE"}"#)
        guard case .valid = verdict else { Issue.record("\(verdict)"); return }
        #expect(read == ["sensor_id": "s-0", "taken_at": "2026-12-02T14:00:00Z", "reading": ["celsius": 20.5, "count": 3], "ok": true])
    }

    @Test func eachFaultNamesItsField() throws {
        #expect(try check(#"{"taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":1}}"#).0 == .malformed(reason: "missing_field", field: "sensor_id"))
        #expect(try check(#"{"sensor_id":"s","taken_at":"soon","reading":{"celsius":1}}"#).0 == .malformed(reason: "invalid_timestamp", field: "taken_at"))
        #expect(try check(#"{"sensor_id":"s","taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":"hot"}}"#).0
                == .malformed(reason: "wrong_type", field: "reading.celsius"))
        #expect(try check(#"{"sensor_id":"s","taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":1,"count":1.5}}"#).0
                == .malformed(reason: "wrong_type", field: "reading.count"))
        #expect(try check(#"{"sensor_id":"s","taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":"nan"}}"#).0
                == .malformed(reason: "wrong_type", field: "reading.celsius"))
        #expect(try check(#"{"sensor_id":"","taken_at":"2026-12-02T14:00:00Z","reading":{"celsius":1}}"#).0 == .malformed(reason: "missing_field", field: "sensor_id"))
        #expect(try check(#"[1]"#).0 == .malformed(reason: "wrong_type", field: ""))
    }

    @Test func freshnessIsByTheTimeField() throws {
        #expect(try check(#"{"sensor_id":"s","taken_at":"2026-11-30T14:00:00Z","reading":{"celsius":1}}"#).0 == .stale(eventID: "s\u{1F}2026-11-30T14:00:00Z"))
        #expect(try check(#"{"sensor_id":"s","taken_at":"2026-12-02T15:00:00Z","reading":{"celsius":1}}"#).0
                == .malformed(reason: "future_timestamp", field: "taken_at"))
    }

    @Test func fieldTypesMapToPostgresTypes() {
        #expect(DatasetStore.sqlType(.string).sql == "text")
        #expect(DatasetStore.sqlType(.integer).sql == "bigint")
        #expect(DatasetStore.sqlType(.number).sql == "double precision")
        #expect(DatasetStore.sqlType(.boolean).sql == "boolean")
        #expect(DatasetStore.sqlType(.timestamp).sql == "timestamptz")
        for type in [DatasetSpec.FieldType.object, .array, .json] { #expect(DatasetStore.sqlType(type).sql == "jsonb") }
        // As PostgreSQL's format_type names them, which the store compares with a live table.
        #expect(DatasetStore.formattedType(.timestamp) == "timestamp with time zone")
        #expect(DatasetStore.formattedType(.number) == "double precision")
    }

    @Test func theTransformWithoutRulesProjectsFieldsToColumns() {
        let projection = ColumnProjection(Self.spec)
        #expect(projection.apply(to: ["sensor_id": "s", "taken_at": "t", "reading": ["celsius": 1.5, "count": 2], "extra": 1])
                == ["sensor_id": "s", "taken_at": "t", "celsius": 1.5, "count": 2])
    }
}
