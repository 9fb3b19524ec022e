import Risk
import SluiceTesting
import Testing

@Suite struct RiskTests {
    let tester: FunctionTester

    init() throws {
        tester = try FunctionTester(Risk.self, config: ["high_value": 400])
    }

    @Test func scoresPurchasesByValueAndKeepsTheOtherFields() async throws {
        let outcomes = try await tester.run([
            ["event_id": "e-1", "event_type": "purchase", "properties": ["value": 100]],
            ["event_id": "e-2", "event_type": "purchase", "properties": ["value": 950.5]],
            ["event_id": "e-3", "event_type": "page_view"],
        ])
        #expect(try FunctionTester.forwarded(outcomes, as: Risk.Scored.self) == [.init(risk: 0.25), .init(risk: 1), .init(risk: 0)])
        guard case .forward(let first, _) = outcomes[0] else { Issue.record("not forwarded"); return }
        #expect(first.value == ["event_id": "e-1", "event_type": "purchase", "properties": ["value": 100], "risk": 0.25])
    }

    @Test func dropsSignUpsAndQuarantinesRowsWithoutAType() async throws {
        let outcomes = try await tester.run([["event_type": "signup"], ["event_id": "e-5"], ["event_type": 7]])
        #expect(outcomes[0] == .drop(reason: "not_scored"))
        #expect(outcomes[1] == .quarantine(reason: "missing_field", event: Event(["event_id": "e-5"]), field: "event_type"))
        #expect(outcomes[2] == .quarantine(reason: "wrong_type", event: Event(["event_type": 7]), field: "event_type"))
    }

    @Test func aConfigurationWithoutHighValueIsRefused() {
        #expect(throws: ManifestError.self) { try FunctionTester(Risk.self, config: ["high": 1]) }
    }
}
