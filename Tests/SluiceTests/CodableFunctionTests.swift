import Foundation
import SluiceTesting
import Testing

/// The typed layer: events decoded, failures quarantined with the field at fault, outputs set
/// over the event or replacing it, configuration decoded once.
@Suite struct CodableFunctionTests {
    struct Limit: CodableFunction {
        struct Config: Decodable, Sendable { var max: Int }
        struct Order: Decodable, Sendable {
            var id: String
            var lines: [Line]
            var placed: Date?
            struct Line: Decodable, Sendable { var qty: Int }
        }
        struct Total: Codable, Sendable, Equatable { var total: Int }
        let max: Int
        init(config: Config) { max = config.max }
        func process(_ order: Order, context: FunctionContext) async throws -> CodableOutcome<Total> {
            let total = order.lines.reduce(0) { $0 + $1.qty }
            if order.id == "bad-reason" { return .drop(reason: "Not A Code") }
            if order.id == "whole" { return .replace(Total(total: total)) }
            if total > max { return .quarantine(reason: "over_limit", field: "lines") }
            return total == 0 ? .drop(reason: "empty") : .forward(Total(total: total))
        }
    }

    let tester: FunctionTester

    init() throws { tester = try FunctionTester(Limit.self, config: ["max": 10]) }

    @Test func outcomesAreTheFunctionsWithItsFieldsSetOverTheEvent() async throws {
        let outcomes = try await tester.run([
            ["id": "a", "lines": [["qty": 2], ["qty": 3]], "note": "kept", "placed": "2026-12-01T10:00:00.250Z"],
            ["id": "b", "lines": []],
            ["id": "c", "lines": [["qty": 11]]],
            ["id": "whole", "lines": [["qty": 1]], "note": "gone"],
        ])
        #expect(outcomes[0] == .forward(Event(["id": "a", "lines": [["qty": 2], ["qty": 3]], "note": "kept", "placed": "2026-12-01T10:00:00.250Z", "total": 5])))
        #expect(outcomes[1] == .drop(reason: "empty"))
        #expect(outcomes[2] == .quarantine(reason: "over_limit", event: Event(["id": "c", "lines": [["qty": 11]]]), field: "lines"))
        #expect(outcomes[3] == .forward(Event(["total": 1])))
        #expect(try FunctionTester.forwarded(outcomes, as: Limit.Total.self) == [Limit.Total(total: 5), nil, nil, Limit.Total(total: 1)])
    }

    @Test func anEventThatDoesNotDecodeIsQuarantinedWithItsPath() async throws {
        let events: [JSONValue] = [["lines": []], ["id": "x", "lines": [["qty": "two"]]], ["id": nil, "lines": []],
                                   ["id": "y", "lines": [], "placed": "yesterday"], 5]
        let outcomes = try await tester.run(events)
        let reasons = outcomes.map { outcome -> String in
            guard case .quarantine(let reason, _, let field) = outcome else { return "not quarantined" }
            return "\(reason) \(field ?? "-")"
        }
        #expect(reasons == ["missing_field id", "wrong_type lines[0].qty", "missing_field id", "wrong_type placed", "wrong_type -"])
    }

    @Test func aReasonThatIsNotACodeFailsTheChunkForGood() async throws {
        do {
            _ = try await tester.run([["id": "bad-reason", "lines": []]])
            Issue.record("no error")
        } catch let error as FunctionError {
            #expect(error.code == "bad_outcomes" && error.kind == .permanent)
        }
    }

    @Test func aConfigurationThatDoesNotFitNamesItsKey() {
        for (config, key) in [(["max": "ten"], "config.max"), ([:], "config.max")] as [(JSONValue, String)] {
            do {
                _ = try FunctionTester(Limit.self, config: config)
                Issue.record("accepted \(config)")
            } catch let error as ManifestError {
                #expect(error.key == key, "\(error)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }
}
