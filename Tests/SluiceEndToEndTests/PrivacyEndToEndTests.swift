import Foundation
import Sluice
import SluicePrivacy
import Testing

/// Consent, geographic restriction, erasure and the audit log: the pipeline of `functions/`,
/// the privacy function and the gateway, each its own process.
@Suite("Privacy end to end", .serialized)
struct PrivacyEndToEndTests {
    /// The pipeline, privacy, the warehouse and a gateway in front of them (HS256), with
    /// `overrides` applied to the stages' manifests and `environment` added to every process's.
    static func with(db: Int, overrides: [String: [(String, String)]] = [:], environment: [String: String] = [:],
                     _ body: (PipelineFixture) async throws -> Void) async throws {
        let root = try TestEnvironment.get().packageRoot
        var manifests = try PipelineFixture.pipelineManifests(overrides: overrides)
        for name in ["privacy", "gateway", "warehouse"] {
            manifests[name] = try String(contentsOfFile: "\(root)/functions/\(name)/function.yaml", encoding: .utf8)
        }
        try await PipelineFixture.with(db: db, manifests: manifests) { fixture in
            fixture.extraEnvironment = ["SLUICE_JWT_ISSUER": GatewayEndToEndTests.issuer, "SLUICE_JWT_AUDIENCE": GatewayEndToEndTests.audience]
                .merging(environment) { $1 }
            try await fixture.startPipeline()
            try await fixture.start("privacy")
            try await fixture.start("warehouse")
            try await fixture.start("gateway", environment: [
                "SLUICE_JWT_SECRET": GatewayEndToEndTests.secret, "SLUICE_UPSTREAM_PRIVACY": fixture.url("privacy", ""),
                "SLUICE_UPSTREAM_INGEST": fixture.url("ingest", ""), "SLUICE_UPSTREAM_WAREHOUSE": fixture.url("warehouse", ""),
            ])
            try await body(fixture)
        }
    }

    static func json(_ response: HTTP.Response) -> JSONValue { (try? JSONParser().parse(Array(response.body))) ?? .null }

    /// An event of the built-in shape, timestamped now.
    static func event(_ id: String, user: String, country: String = "US", consent: String? = nil) -> String {
        let now = ISO8601DateFormatter().string(from: Date())
        let context = consent.map { #","consent":\#($0)"# } ?? ""
        return #"{"metadata":{"event_id":"\#(id)","timestamp":"\#(now)","version":"1","source":"e2e"},"user":{"id":"\#(user)"},"#
            + #""context":{"location":{"country":"\#(country)"}\#(context)},"payload":{"event_type":"click"}}"#
    }

    /// Done-when of the privacy issue: a gen_events.py workload at the default rates, with the
    /// manifest's withdrawn users withdrawn through the API (gateway, admin) before the upload,
    /// is accounted for exactly, `no_consent` included. Then one loaded subject is erased.
    @Test func withdrawnConsentsAndAnErasureThroughTheAPI() async throws {
        try await Self.with(db: 8) { fixture in
            let admin = try await GatewayEndToEndTests.cliToken(fixture, subject: "privacy-admin", roles: "admin")
            let auth = ["Authorization": "Bearer \(admin)", "Content-Type": "application/json"]
            let workload = try await GeneratedWorkload.make(count: 20_000, seed: 106, format: "ndjson", noConsentRate: nil, in: fixture.directory)
            #expect(workload.withdrawnUsers.count == 20, "2 % of gen_events.py's 1,000 users")
            #expect(workload.expected["no_consent"] ?? 0 > 0)
            var pseudonyms: [String] = []
            for user in workload.withdrawnUsers {
                let put = try await HTTP.request("PUT", fixture.url("gateway", "/api/v1/consents/\(user)"),
                                                 body: Data(#"{"purpose": "analytics", "granted": false}"#.utf8), headers: auth)
                #expect(put.status == 200, "\(put.text)")
                let answer = Self.json(put)
                #expect(answer["granted"] == .bool(false))
                #expect(answer["purpose"]?.stringValue == "analytics")
                let pseudonym = try #require(answer["subject"]?.stringValue)
                #expect(PIIMasker.isPseudonymousUserID(pseudonym))
                pseudonyms.append(pseudonym)
            }
            let answer = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(answer.status == 202)
            let id = try #require(answer.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("received") == workload.count)
            for name in ["loaded", "quarantined", "stale", "duplicate", "no_consent"] {
                #expect(job.count(name) == workload.expected[name], "counts.\(name)")
            }
            #expect(job.count("geo_restricted") == 0)
            #expect(job.count("failed") == 0)
            #expect(try await fixture.warehouseRows(job: id) == workload.expected["loaded"])
            let withdrawnRows = try await fixture.clients.postgres.query(
                "SELECT count(*) FROM events WHERE user_id = ANY(\("{\(pseudonyms.joined(separator: ","))}")::text[])")
            #expect(withdrawnRows.scalar == "0", "no event of a withdrawn subject is in the warehouse")

            // The consent changes are in the audit log, by the token's subject, as pseudonyms.
            let changes = try await HTTP.request("GET", fixture.url("gateway", "/api/v1/audit?action=putConsent&limit=1000"), headers: auth)
            #expect(changes.status == 200)
            let entries = Self.json(changes)["entries"]?.arrayValue ?? []
            #expect(entries.count == workload.withdrawnUsers.count)
            #expect(Set(entries.compactMap { $0["subject"]?.stringValue }) == Set(pseudonyms))
            #expect(entries.allSatisfy { $0["actor"]?.stringValue == "privacy-admin" && $0["request_id"]?.stringValue?.isEmpty == false })
            #expect(entries.first?["detail"]?["granted"] == .bool(false))

            // Erasure of a subject whose events were loaded (and some quarantined).
            let subject = try #require((0..<1000).map { "u-\($0)" }.first { !workload.withdrawnUsers.contains($0) })
            let consents = Self.json(try await HTTP.request("GET", fixture.url("gateway", "/api/v1/consents/\(subject)"), headers: auth))
            let pseudonym = try #require(consents["subject"]?.stringValue)
            #expect(consents["consents"]?.arrayValue?.isEmpty == true)
            let postgres = fixture.clients.postgres
            let loaded = Int(try await postgres.query("SELECT count(*) FROM events WHERE user_id = \(pseudonym)").scalar ?? "") ?? -1
            let quarantined = Int(try await postgres.query("SELECT count(*) FROM quarantine WHERE subject = \(pseudonym)").scalar ?? "") ?? -1
            #expect(loaded > 0)
            let erased = try await HTTP.request("DELETE", fixture.url("gateway", "/api/v1/subjects/\(subject)"), headers: auth)
            #expect(erased.status == 200, "\(erased.text)")
            let report = Self.json(erased)
            #expect(report["subject"]?.stringValue == pseudonym)
            #expect(report["removed"]?["events"]?.intValue == Int64(loaded))
            #expect(report["removed"]?["quarantine"]?.intValue == Int64(quarantined))
            #expect(report["consent"]?["granted"] == .bool(false))
            #expect(report["consent"]?["purpose"]?.stringValue == "*")
            #expect(try await postgres.query("SELECT count(*) FROM events WHERE user_id = \(pseudonym)").scalar == "0")
            #expect(try await postgres.query("SELECT count(*) FROM quarantine WHERE subject = \(pseudonym)").scalar == "0")
            // Everyone else's rows stay.
            let remaining = Int(try await postgres.query("SELECT count(*) FROM events WHERE job_id = \(id)::uuid").scalar ?? "") ?? -1
            #expect(remaining == workload.expected["loaded"]! - loaded)

            // A later event of the subject is dropped.
            let later = try await fixture.upload(bytes: Data(Self.event("after-erasure-1", user: subject).utf8), contentType: "application/x-ndjson")
            let laterJob = try await fixture.waitForJob(try #require(later.body["job_id"]?.stringValue))
            #expect(laterJob.count("no_consent") == 1)
            #expect(laterJob.count("loaded") == 0)

            // The erasure is audited, with its counts; the audit log refuses change.
            let audit = try await HTTP.request("GET", fixture.url("gateway", "/api/v1/audit?action=eraseSubject&subject=\(subject)"), headers: auth)
            let erasures = Self.json(audit)["entries"]?.arrayValue ?? []
            #expect(erasures.count == 1)
            #expect(erasures.first?["id"]?.intValue == report["audit_id"]?.intValue)
            #expect(erasures.first?["actor"]?.stringValue == "privacy-admin")
            #expect(erasures.first?["detail"]?["events"]?.intValue == Int64(loaded))
            #expect(erasures.first?["resource"]?.stringValue == "subjects/\(pseudonym)")
            for statement in ["UPDATE audit_log SET actor = 'someone-else'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
                let refused = try await runCommand("/usr/bin/psql", [fixture.databaseURL, "-v", "ON_ERROR_STOP=1", "-c", statement])
                #expect(refused.status != 0, "\(statement) was allowed")
                #expect(refused.error.contains("audit_log is append-only"), "\(statement): \(refused.error)")
            }
            #expect(try await postgres.query("SELECT count(*) FROM audit_log WHERE actor = 'someone-else'").scalar == "0")
            // No user id in clear in the audit log.
            let plain = try await postgres.query("SELECT count(*) FROM audit_log WHERE resource LIKE '%u-%' OR subject LIKE 'u-%'")
            #expect(plain.scalar == "0")
        }
    }

    /// A withdrawal reaches every running process's consent cache within a second: validate's
    /// (uploads) and ingest's (the dry run builds validate too). Consent the event carries is
    /// honoured unless a withdrawal is recorded; restricted countries are dropped as geo_restricted.
    @Test func aWithdrawalReachesEveryProcessWithinASecond() async throws {
        try await Self.with(db: 9, overrides: ["validate": [("countries: []", "countries: [JP, kp]")]]) { fixture in
            let privacy = ["Content-Type": "application/json", "X-Sluice-Subject": "e2e-operator"]
            func setConsent(_ user: String, _ granted: Bool) async throws {
                let put = try await HTTP.request("PUT", fixture.url("privacy", "/api/v1/consents/\(user)"),
                                                 body: Data(#"{"purpose": "analytics", "granted": \#(granted)}"#.utf8), headers: privacy)
                #expect(put.status == 200, "\(put.text)")
            }
            func dryRun(_ event: String) async throws -> JSONValue? {
                let response = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/process/transform"), body: Data("[\(event)]".utf8),
                                                      headers: ["Content-Type": "application/json"])
                #expect(response.status == 200, "\(response.text)")
                return Self.json(response)["results"]?[0]
            }
            func upload(_ events: [String]) async throws -> JSONValue {
                let answer = try await fixture.upload(bytes: Data(events.joined(separator: "\n").utf8), contentType: "application/x-ndjson")
                return try await fixture.waitForJob(try #require(answer.body["job_id"]?.stringValue))
            }
            // Both caches learn that u-watch has no recorded consent (and is allowed).
            #expect(try await dryRun(Self.event("watch-dry-1", user: "u-watch"))?["outcome"]?.stringValue == "forward")
            let first = try await upload([Self.event("watch-1", user: "u-watch")])
            #expect(first.count("loaded") == 1)

            try await setConsent("u-watch", false)
            try await Task.sleep(for: .seconds(1))
            let dropped = try await dryRun(Self.event("watch-dry-2", user: "u-watch"))
            #expect(dropped?["outcome"]?.stringValue == "drop")
            #expect(dropped?["reason"]?.stringValue == "no_consent")

            try await setConsent("u-granted", true)
            try await setConsent("u-regranted", false)
            let job = try await upload([
                Self.event("watch-2", user: "u-watch"),                                               // withdrawn
                Self.event("watch-3", user: "u-watch", consent: #"{"analytics": true}"#),             // a withdrawal overrides the event
                Self.event("carried-1", user: "u-carried", consent: #"{"analytics": false}"#),        // carried withdrawal
                Self.event("carried-2", user: "u-carried-all", consent: "false"),                     // carried, every purpose
                Self.event("carried-3", user: "u-other-purpose", consent: #"{"marketing": false}"#),  // another purpose: allowed
                Self.event("granted-1", user: "u-granted"),                                           // recorded grant
                Self.event("granted-2", user: "u-granted", consent: #"{"*": false}"#),                // the event withdraws
                Self.event("geo-1", user: "u-geo", country: "JP"),
                Self.event("geo-2", user: "u-geo", country: "kp"),
                Self.event("geo-3", user: "u-geo", country: "DE"),
            ])
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("received") == 10)
            #expect(job.count("no_consent") == 5)
            #expect(job.count("geo_restricted") == 2)
            #expect(job.count("loaded") == 3)
            let loaded = try await fixture.clients.postgres.query(
                "SELECT string_agg(event_id, ',' ORDER BY event_id) FROM events WHERE job_id = \(try #require(job["id"]?.stringValue))::uuid")
            #expect(loaded.scalar == "carried-3,geo-3,granted-1")

            // Meanwhile validate answers unchanged subjects from its cache: a subject read for one
            // upload is not read from PostgreSQL again for the next.
            for id in ["granted-3", "granted-4"] {
                #expect(try await upload([Self.event(id, user: "u-granted")]).count("loaded") == 1)
            }
            let metrics = try await HTTP.request("GET", fixture.url("validate", "/metrics")).text
            let cached = metrics.split(separator: "\n").first { $0.hasPrefix(#"sluice_consent_lookups_total{source="cache"}"#) }
            #expect((cached?.split(separator: " ").last.flatMap { Double($0) } ?? 0) >= 1, "validate's cache answered nothing: \(cached ?? "no metric")")

            // Granting again takes effect as fast.
            try await setConsent("u-watch", true)
            try await Task.sleep(for: .seconds(1))
            #expect(try await dryRun(Self.event("watch-dry-3", user: "u-watch"))?["outcome"]?.stringValue == "forward")
            #expect(try await upload([Self.event("watch-4", user: "u-watch")]).count("loaded") == 1)
        }
    }
}
