import Logging
import Sluice
@testable import SluiceFunctions
import SluicePrivacy
import Testing

@Suite("Consent and geographic restriction")
struct ConsentTests {
    func record(_ purpose: String, _ granted: Bool, at: Int64) -> ConsentRecord {
        ConsentRecord(purpose: purpose, granted: granted, recordedAt: at)
    }

    @Test func aRecordedWithdrawalOverridesTheEvent() {
        let withdrawn = [record("analytics", false, at: 10)]
        #expect(!ConsentRule.allows(recorded: withdrawn, carried: true, purpose: "analytics", unknown: .allow))
        #expect(!ConsentRule.allows(recorded: withdrawn, carried: nil, purpose: "analytics", unknown: .allow))
        // A withdrawal for another purpose does not apply.
        #expect(ConsentRule.allows(recorded: withdrawn, carried: nil, purpose: "marketing", unknown: .allow))
        // An erasure's `*` withdrawal applies to every purpose.
        #expect(!ConsentRule.allows(recorded: [record("*", false, at: 5)], carried: true, purpose: "marketing", unknown: .allow))
    }

    @Test func theNewestOfThePurposeAndStarDecides() {
        // Erased (at 5), then granted analytics again (at 9): allowed for analytics only.
        let regranted = [record("*", false, at: 5), record("analytics", true, at: 9)]
        #expect(ConsentRule.allows(recorded: regranted, carried: nil, purpose: "analytics", unknown: .deny))
        #expect(!ConsentRule.allows(recorded: regranted, carried: nil, purpose: "marketing", unknown: .allow))
        // Granted (at 5), then erased (at 9): dropped.
        #expect(!ConsentRule.allows(recorded: [record("analytics", true, at: 5), record("*", false, at: 9)],
                                    carried: true, purpose: "analytics", unknown: .allow))
    }

    @Test func carriedConsentIsHonouredWithoutAWithdrawal() {
        let granted = [record("analytics", true, at: 1)]
        #expect(!ConsentRule.allows(recorded: granted, carried: false, purpose: "analytics", unknown: .allow))
        #expect(ConsentRule.allows(recorded: granted, carried: nil, purpose: "analytics", unknown: .deny))
        #expect(ConsentRule.allows(recorded: [], carried: true, purpose: "analytics", unknown: .deny))
        #expect(!ConsentRule.allows(recorded: [], carried: false, purpose: "analytics", unknown: .allow))
    }

    @Test func unknownSubjectsFollowThePolicy() {
        #expect(ConsentRule.allows(recorded: [], carried: nil, purpose: "analytics", unknown: .allow))
        #expect(!ConsentRule.allows(recorded: [], carried: nil, purpose: "analytics", unknown: .deny))
        #expect(!ConsentRule.allows(recorded: [record("marketing", true, at: 1)], carried: nil, purpose: "analytics", unknown: .deny))
    }

    @Test func theCarriedForms() throws {
        let field = JSONPath("context.consent")
        func event(_ consent: String) throws -> JSONValue { try JSONParser().parse(#"{"context": {"consent": \#(consent)}}"#) }
        #expect(ConsentRule.carried(in: try event("true"), at: field, purpose: "analytics") == true)
        #expect(ConsentRule.carried(in: try event("false"), at: field, purpose: "analytics") == false)
        #expect(ConsentRule.carried(in: try event(#"{"analytics": false, "*": true}"#), at: field, purpose: "analytics") == false)
        #expect(ConsentRule.carried(in: try event(#"{"marketing": false, "*": true}"#), at: field, purpose: "analytics") == true)
        #expect(ConsentRule.carried(in: try event(#"{"marketing": false}"#), at: field, purpose: "analytics") == nil)
        #expect(ConsentRule.carried(in: try event(#""yes""#), at: field, purpose: "analytics") == nil)
        #expect(ConsentRule.carried(in: try event(#"{"analytics": "true"}"#), at: field, purpose: "analytics") == nil)
        #expect(ConsentRule.carried(in: .object([:]), at: field, purpose: "analytics") == nil)
    }

    @Test func purposes() {
        for valid in ["analytics", "*", "a", "ads.v2", "crm_sync-1"] { #expect(ConsentRule.isValidPurpose(valid), "\(valid)") }
        for invalid in ["", "Analytics", "1abc", "a b", "**", String(repeating: "a", count: 65), "é"] {
            #expect(!ConsentRule.isValidPurpose(invalid), "\(invalid)")
        }
    }

    func chunk(_ countries: [String?]) -> Chunk {
        Chunk(id: "c", events: countries.enumerated().map { index, country in
            var value: JSONValue = ["metadata": ["event_id": .string("e\(index)")]]
            if let country { value.setValue(.string(country), atPath: "context.location.country") }
            return Event(value)
        })
    }

    @Test func restrictedCountriesAreDroppedAsGeoRestricted() async throws {
        let manifest = try ManifestLoader.parse("""
            handler: validate
            triggers: [{stream: validate}]
            config:
              geo_restrict: {countries: [JP, kp]}
            """, name: "validate", file: "validate.yaml")
        let middleware = try GeoRestrictMiddleware(manifest: manifest)
        #expect(middleware.countries == ["JP", "KP"])
        // The function quarantines the third event; geo-restrict only looks at forwarded ones.
        let inner = ClosureEventFunction { chunk, _ in
            chunk.events.enumerated().map { index, event in index == 2 ? .quarantine(reason: "missing_field", event: event) : .forward(event) }
        }
        let input = chunk(["JP", "US", "JP", "jp", nil, "Kp"])
        let context = FunctionContext(functionName: "validate", logger: Logger(label: "test"), chunk: input, attempt: 1, deadline: .now + .seconds(5))
        let outcomes = try await middleware.handle(input, context: context, next: inner)
        #expect(outcomes.map(\.kind) == [.drop, .forward, .quarantine, .drop, .forward, .drop])
        #expect(outcomes[0] == .drop(reason: "geo_restricted"))
    }

    @Test func badGeoAndConsentConfigurationIsRefused() throws {
        for bad in ["{countries: [JPN]}", "{countries: JP}", "[JP]", "{countries: [1]}"] {
            let manifest = try ManifestLoader.parse("handler: validate\ntriggers: [{stream: validate}]\nconfig:\n  geo_restrict: \(bad)\n",
                                                    name: "validate", file: "validate.yaml")
            #expect(throws: ManifestError.self, "\(bad)") { try GeoRestrictMiddleware(manifest: manifest) }
        }
    }

    @Test func auditActionsAreTheOperationIDs() {
        let audit = AuditMiddleware(operations: WarehouseFunction.operations + PrivacyFunction.operations,
                                    pool: .init(url: "postgres://unused", threadPool: .singleton),
                                    masker: AuditResource.masker(key: nil), logger: Logger(label: "test"))
        #expect(audit.action(method: "GET", path: "/api/v1/data/abc") == "getRecord")
        #expect(audit.action(method: "DELETE", path: "/api/v1/data/abc") == "deleteRecord")
        #expect(audit.action(method: "GET", path: "/api/v1/audit") == "getAudit")
        #expect(audit.action(method: "GET", path: "/api/v1/data/") == nil)
        #expect(audit.action(method: "POST", path: "/api/v1/data/abc") == nil)
        #expect(audit.action(method: "GET", path: "/health/ready") == nil)
    }

    @Test func auditRowsNameTheRouteTemplateAndMaskedParametersNeverThePath() throws {
        let key = "an audit test pseudonym key 32+"
        let audit = AuditMiddleware(operations: WarehouseFunction.operations + PrivacyFunction.operations,
                                    pool: .init(url: "postgres://unused", threadPool: .singleton),
                                    masker: AuditResource.masker(key: key), logger: Logger(label: "test"))
        let found = try #require(audit.operation(method: "GET", path: "/api/v1/data/mail%20jane.doe%40example.com"))
        #expect(found.operation.action == "getRecord")
        #expect(found.resource.template == "/api/v1/data/{event_id}")
        let masked = try #require(found.resource.parameters["event_id"])
        #expect(!masked.contains("jane.doe"), "\(masked)")
        #expect(!masked.contains("example.com"), "\(masked)")
        #expect(masked.hasPrefix("mail <EMAIL:"), "\(masked)")
        // The same address, the same pseudonym: rows about one value can still be found.
        #expect(audit.operation(method: "GET", path: "/api/v1/data/mail%20jane.doe@example.com")?.resource.parameters["event_id"] == masked)
        #expect(found.resource.detail == ["parameters": ["event_id": .string(masked)]])
        #expect(found.resource.subject == nil)
        // An id without personal data stays readable.
        #expect(audit.operation(method: "GET", path: "/api/v1/data/qs-0003")?.resource.parameters == ["event_id": "qs-0003"])
        // A subject is stored as its pseudonym, the form erasure looks for.
        let subject = AuditResource.of(pattern: ["api", "v1", "subjects", "{subject}"], segments: ["api", "v1", "subjects", "jane%40example.com"],
                                       masker: AuditResource.masker(key: key))
        let pseudonym = PIIMasker(operators: [:], key: Array(key.utf8)).pseudonymousUserID("jane@example.com")
        #expect(subject.template == "/api/v1/subjects/{subject}")
        #expect(subject.subject == pseudonym)
        #expect(subject.parameters == ["subject": pseudonym])
        // Without a pseudonym key the placeholder stands in.
        let unkeyed = AuditResource.of(pattern: ["api", "v1", "data", "{id}"], segments: ["api", "v1", "data", "jane@example.com"],
                                       masker: AuditResource.masker(key: nil))
        #expect(unkeyed.parameters == ["id": "<EMAIL>"])
    }
}
