import Sluice
@testable import SluiceFunctions
import Logging
import Testing

@Suite("Transform rules")
struct TransformRuleTests {
    let file = "functions/transform/function.yaml"

    func program(_ rules: JSONValue, plugins: TransformPluginRegistry = TransformPluginRegistry()) throws -> TransformProgram {
        try TransformProgram(config: ["rules": rules], file: file, plugins: plugins)
    }

    func manifestError(_ rules: JSONValue) -> ManifestError? {
        do {
            _ = try program(rules)
            return nil
        } catch let error as ManifestError {
            return error
        } catch {
            return nil
        }
    }

    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func everyRuleInOrder() throws {
        let rules: JSONValue = [
            ["rename": ["from": "metadata.event_id", "to": "event_id"]],
            ["cast": ["field": "payload.properties.value", "to": "number"]],
            ["cast": ["field": "payload.properties.count", "to": "integer"]],
            ["default": ["field": "context.location.region", "value": "unknown"]],
            ["drop": ["field": "user.attributes"]],
            ["lowercase": ["field": "payload.event_type"]],
            ["concat": ["fields": ["context.location.country", "context.location.region"], "separator": "-", "to": "location"]],
            ["hash": ["field": "user.session_id", "to": "session_hash"]],
        ]
        let event: JSONValue = [
            "metadata": ["event_id": "e-1", "timestamp": "2026-11-23T11:00:00Z"],
            "user": ["id": "u-1", "session_id": "abc", "attributes": ["plan": "pro"]],
            "context": ["location": ["country": "DE"]],
            "payload": ["event_type": "PageView", "properties": ["value": "12.5", "count": "3"]],
        ]
        let result = try program(rules).apply(to: event)
        #expect(result == [
            "metadata": ["timestamp": "2026-11-23T11:00:00Z"],
            "user": ["id": "u-1", "session_id": "abc"],
            "context": ["location": ["country": "DE", "region": "unknown"]],
            "payload": ["event_type": "pageview", "properties": ["value": 12.5, "count": 3]],
            "event_id": "e-1",
            "location": "DE-unknown",
            "session_hash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ])
    }

    @Test func castsAndTheirFailures() throws {
        let toInt = try program([["cast": ["field": "v", "to": "integer"]]])
        #expect(try toInt.apply(to: ["v": "42"]) == ["v": 42])
        #expect(try toInt.apply(to: ["v": 7.0]) == ["v": 7])
        #expect(try toInt.apply(to: ["v": nil]) == ["v": nil])  // null stays null
        #expect(try toInt.apply(to: [:]) == [:])  // a missing field stays missing
        #expect(throws: TransformFailure(code: "cast_failed", field: "v")) { try toInt.apply(to: ["v": "4.5"]) }
        let toBool = try program([["cast": ["field": "v", "to": "boolean"]]])
        #expect(try toBool.apply(to: ["v": "Yes"]) == ["v": true])
        #expect(try toBool.apply(to: ["v": 0]) == ["v": false])
        #expect(throws: TransformFailure(code: "cast_failed", field: "v")) { try toBool.apply(to: ["v": "maybe"]) }
        let toString = try program([["cast": ["field": "v", "to": "string"]]])
        #expect(try toString.apply(to: ["v": 12]) == ["v": "12"])
        #expect(throws: TransformFailure(code: "cast_failed", field: "v")) { try toString.apply(to: ["v": [1]]) }
    }

    struct Upper: TransformPlugin {
        func transform(_ event: JSONValue) throws -> JSONValue {
            guard case .string(let s)? = event["name"] else { throw TransformFailure(code: "x", field: "name") }
            var copy = event
            copy.setValue(.string(s.uppercased()), atPath: "name")
            return copy
        }
    }

    @Test func plugins() throws {
        var registry = TransformPluginRegistry()
        registry.register("upper", Upper())
        let rules = try program([["plugin": ["name": "upper"]]], plugins: registry)
        #expect(try rules.apply(to: ["name": "ada"]) == ["name": "ADA"])
        #expect(throws: TransformFailure(code: "plugin_failed", field: "upper")) { try rules.apply(to: ["other": 1]) }
        do {
            _ = try program([["plugin": ["name": "nope"]]], plugins: registry)
            Issue.record("expected an error")
        } catch let error as ManifestError {
            #expect(error.key == "config.rules[0].plugin.name")
        }
    }

    @Test func badRulesNameTheKey() {
        #expect(manifestError([["reverse": ["field": "a"]]])?.key == "config.rules[0].reverse")
        #expect(manifestError([["reverse": ["field": "a"]]])?.code == .unknownKey)
        #expect(manifestError([["drop": ["field": "a"]], ["cast": ["field": "a", "to": "date"]]])?.key == "config.rules[1].cast.to")
        #expect(manifestError([["rename": ["from": "a"]]])?.key == "config.rules[0].rename.to")
        #expect(manifestError([["rename": ["from": "a"]]])?.code == .missingField)
        #expect(manifestError([["drop": ["field": "a", "extra": 1]]])?.key == "config.rules[0].drop.extra")
        #expect(manifestError([["drop": ["field": "a..b"]]])?.key == "config.rules[0].drop.field")
        #expect(manifestError([["drop": ["field": "a"], "lowercase": ["field": "b"]]])?.key == "config.rules[0]")
        #expect(manifestError("not a list")?.key == "config.rules")
        #expect(manifestError([["concat": ["fields": [], "to": "x"]]])?.key == "config.rules[0].concat.fields")
    }
}

@Suite("Transform function")
struct TransformFunctionTests {
    @Test func rulesMakeRowsAndFailuresNameTheirCode() throws {
        let program = try TransformProgram(config: ["rules": [
            ["rename": ["from": "metadata.event_id", "to": "event_id"]],
            ["cast": ["field": "payload.properties.value", "to": "number"]],
        ]], file: "datasets/events.yaml")
        let transform = DatasetTransform.rules(program)
        #expect(try transform.apply(to: ["metadata": ["event_id": "e-1"], "payload": ["properties": ["value": "2.5"]]])
                == ["metadata": [:], "payload": ["properties": ["value": 2.5]], "event_id": "e-1"])
        #expect(throws: TransformFailure.self) { try transform.apply(to: ["payload": ["properties": ["value": "lots"]]]) }
        do {
            _ = try transform.apply(to: ["payload": ["properties": ["value": "lots"]]])
        } catch {
            #expect(error.code == "cast_failed")
        }
    }

    @Test func withoutRulesEachFieldGoesToItsColumn() throws {
        let spec = try DatasetSpec(json: [
            "name": "readings",
            "fields": [
                ["name": "sensor_id", "type": "string", "required": true],
                ["name": "reading.celsius", "type": "number"],
                ["name": "reading.raw", "type": "string", "column": .null],
                ["name": "site.name", "type": "string", "column": "site"],
            ],
            "key": "sensor_id",
        ])
        let transform = DatasetTransform.projection(ColumnProjection(spec))
        #expect(try transform.apply(to: ["sensor_id": "s-1", "reading": ["celsius": 21.5, "raw": "x"], "site": ["name": "north"], "extra": 1])
                == ["sensor_id": "s-1", "reading_celsius": 21.5, "site": "north"])
        // Absent and null fields are left out (NULL in the table).
        #expect(try transform.apply(to: ["sensor_id": "s-2", "reading": ["celsius": .null]]) == ["sensor_id": "s-2"])
    }
}
