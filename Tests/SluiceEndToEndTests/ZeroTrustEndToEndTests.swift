import Foundation
import Sluice
import SluiceHTTP
import Testing

/// Every function its own `sluice serve` process behind a gateway, as deployed: the attacks of
/// the audit (issue 19) are refused and the legitimate paths still work.
@Suite("Zero trust between functions", .serialized)
struct ZeroTrustEndToEndTests {
    typealias G = GatewayEndToEndTests

    static func code(_ response: HTTP.Response) -> String? { G.problemCode(response) }

    static func json(_ response: HTTP.Response) -> JSONValue { (try? JSONParser().parse(Array(response.body))) ?? .null }

    /// No assertion, a forged caller, an assertion for another request, one signed with another
    /// key, an expired one: each HTTP function answers 401 on its own port; the gateway's path works.
    @Test func functionsAnswerOnlyWhatTheGatewayChecked() async throws {
        try await G.with(db: 20) { fixture in
            let none = ["X-Sluice-Assertion": ""]
            let forged = none.merging(["X-Sluice-Subject": "admin-of-everything", "X-Sluice-Roles": "admin,analyst,ingest"]) { $1 }
            let direct: [(String, String, String)] = [
                ("privacy", "GET", "/api/v1/audit"),
                ("privacy", "DELETE", "/api/v1/subjects/alice"),
                ("privacy", "PUT", "/api/v1/consents/alice"),
                ("warehouse", "GET", "/api/v1/analytics/summary"),
                ("warehouse", "GET", "/api/v1/data/some-event"),
                ("ingest", "GET", "/api/v1/jobs"),
                ("ingest", "POST", "/api/v1/ingest"),
                ("calls", "POST", "/api/v1/functions/validate/async"),
                ("calls", "GET", "/api/v1/calls/00000000-0000-4000-8000-000000000000"),
            ]
            let json = ["Content-Type": "application/json"]
            for (function, method, path) in direct {
                let body = method == "GET" || method == "DELETE" ? nil : Data(#"{"purpose": "analytics", "granted": false}"#.utf8)
                for (label, headers) in [("no assertion", none), ("forged caller headers", forged)] {
                    let answer = try await HTTP.request(method, fixture.url(function, path), body: body, headers: headers.merging(json) { $1 })
                    #expect(answer.status == 401 && Self.code(answer) == "caller_unverified", "\(label): \(method) \(function) \(path) answered \(answer.status) \(answer.text)")
                }
            }
            // An assertion the gateway made for one request does not open another.
            let forJobs = TestCaller.assertion(method: "GET", url: fixture.url("ingest", "/api/v1/jobs"))
            let replayed = try await HTTP.request("GET", fixture.url("privacy", "/api/v1/audit"), headers: ["X-Sluice-Assertion": forJobs])
            #expect(replayed.status == 401)
            let otherMethod = try await HTTP.request("DELETE", fixture.url("ingest", "/api/v1/jobs"), headers: ["X-Sluice-Assertion": forJobs])
            #expect(otherMethod.status == 401)
            // Signed with a key that is not the gateway's, or expired.
            let stranger = CallerAssertionSigner.generate().sign(subject: "x", roles: ["admin"], audience: TestCaller.functions, method: "GET", target: "/api/v1/audit",
                                                                       body: .digest(of: [UInt8]()), requestID: nil)
            #expect(try await HTTP.request("GET", fixture.url("privacy", "/api/v1/audit"), headers: ["X-Sluice-Assertion": stranger]).status == 401)
            let old = Int64(Date().timeIntervalSince1970) - 600
            let expired = TestCaller.signer.sign(CallerAssertion(subject: "x", roles: ["admin"], audience: TestCaller.functions, method: "GET",
                                                                 target: "/api/v1/audit", body: .digest(of: [UInt8]()),
                                                                 requestID: nil, issuedAt: old, expiresAt: old + 60))
            #expect(try await HTTP.request("GET", fixture.url("privacy", "/api/v1/audit"), headers: ["X-Sluice-Assertion": expired]).status == 401)
            // Accepted once, by the function it names, for the body it binds.
            let once = TestCaller.assertion(method: "GET", url: fixture.url("privacy", "/api/v1/audit"), body: [], subject: "zt-admin")
            #expect(try await HTTP.request("GET", fixture.url("privacy", "/api/v1/audit"), headers: ["X-Sluice-Assertion": once]).status == 200)
            #expect(try await HTTP.request("GET", fixture.url("privacy", "/api/v1/audit"), headers: ["X-Sluice-Assertion": once]).status == 401,
                    "a replayed assertion")
            let forIngest = TestCaller.signer.sign(subject: "x", roles: ["admin"], audience: ["ingest"], method: "GET", target: "/api/v1/audit",
                                                   body: .digest(of: [UInt8]()), requestID: nil)
            #expect(try await HTTP.request("GET", fixture.url("privacy", "/api/v1/audit"), headers: ["X-Sluice-Assertion": forIngest]).status == 401,
                    "an assertion made for another function")
            let consent = Data(#"{"purpose": "analytics", "granted": true}"#.utf8)
            let otherBody = TestCaller.assertion(method: "PUT", url: fixture.url("privacy", "/api/v1/consents/zt-body"), body: Array(#"{"purpose": "analytics", "granted": false}"#.utf8))
            #expect(try await HTTP.request("PUT", fixture.url("privacy", "/api/v1/consents/zt-body"), body: consent,
                                           headers: ["Content-Type": "application/json", "X-Sluice-Assertion": otherBody]).status == 401,
                    "an assertion made for another body")
            // The probes stay open (the kubelet has no assertion).
            #expect(try await HTTP.request("GET", fixture.url("privacy", "/health/live"), headers: none).status == 200)

            // Through the gateway: the token decides, and headers a caller adds change nothing.
            let analyst = try await G.cliToken(fixture, subject: "zt-analyst", roles: "analyst")
            let refused = try await HTTP.request("GET", fixture.url("gateway", "/api/v1/audit"), headers: [
                "Authorization": "Bearer \(analyst)", "X-Sluice-Subject": "zt-admin", "X-Sluice-Roles": "admin",
                "X-Sluice-Assertion": TestCaller.assertion(method: "GET", url: fixture.url("gateway", "/api/v1/audit")),
            ])
            #expect(refused.status == 403 && Self.code(refused) == "forbidden", "\(refused.text)")
            let admin = try await G.cliToken(fixture, subject: "zt-admin", roles: "admin")
            let audit = try await HTTP.request("GET", fixture.url("gateway", "/api/v1/audit?limit=500"), headers: [
                "Authorization": "Bearer \(admin)", "X-Sluice-Subject": "someone-else",
            ])
            #expect(audit.status == 200, "\(audit.text)")
            // Every audit row names a caller the gateway verified: none of the refused calls above
            // wrote a row, and no row names the forged actors.
            let actors = try await fixture.clients.postgres.query("SELECT DISTINCT actor FROM audit_log")
            let names = Set(actors.rows.compactMap { $0[0] })
            #expect(!names.contains("admin-of-everything") && !names.contains("someone-else") && !names.contains("anonymous"), "\(names)")
            #expect(names.isSubset(of: ["zt-admin", "zt-analyst"]), "\(names)")
        }
    }

    /// Paths that a router reads differently from the gateway's check are normalised first, or refused.
    @Test func pathSpellingsMeetTheSameCheck() async throws {
        try await G.with(db: 20) { fixture in
            let admin = try await G.cliToken(fixture, subject: "zt-admin", roles: "admin")
            let port = fixture.ports["gateway"]!
            for path in ["//api/v1/audit", "/api//v1/audit", "/api/v1/./audit", "/./api/v1/audit", "/api/v1/audit/", "///api/v1//audit"] {
                let anonymous = try await RawHTTP.exchange(port: port, RawHTTP.request("GET", path))
                #expect(anonymous.status == 401, "\(path) without a token answered \(anonymous.status)")
                let allowed = try await RawHTTP.exchange(port: port, RawHTTP.request("GET", path, headers: [("Authorization", "Bearer \(admin)")]))
                #expect(allowed.status == 200, "\(path) with an admin token answered \(allowed.status)")
            }
            for path in ["/api/v1/%2e%2e/v1/audit", "/api%2Fv1/audit", "/api/v1/data/..%2Faudit", "/api/v1/../v1/audit", "/api/v1/data/a%5Cb", "/api/v1/data/%00"] {
                let answer = try await RawHTTP.exchange(port: port, RawHTTP.request("GET", path, headers: [("Authorization", "Bearer \(admin)")]))
                #expect(answer.status == 400, "\(path) answered \(answer.status)")
                #expect(BadInputEndToEndTests.problem(answer)["code"]?.stringValue == "invalid_path", "\(path)")
            }
        }
    }

    /// Async calls reach only functions that opt in, and what a call stores is masked.
    @Test func asyncCallsOnlyForFunctionsThatOptInAndMasked() async throws {
        try await G.with(db: 20) { fixture in
            let ingest = try await G.cliToken(fixture, subject: "zt-ingest", roles: "ingest")
            let headers = ["Authorization": "Bearer \(ingest)", "Content-Type": "application/json"]
            let now = ISO8601DateFormatter().string(from: Date())
            let row = #"[{"metadata":{"event_id":"zt-1","timestamp":"\#(now)","version":"1","source":"zt"},"user":{"id":"alice@example.com"},"user_id":"alice@example.com","payload":{"event_type":"click","properties":{"note":"mail carol@example.com"}}}]"#
            for name in ["load", "jobs", "notify", "quarantine", "enrich", "transform", "gateway", "ingest"] {
                let answer = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/\(name)/async"), body: Data(row.utf8), headers: headers)
                #expect(answer.status == 404 && Self.code(answer) == "function_not_found", "\(name): \(answer.status) \(answer.text)")
            }
            let queued = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/validate/async"), body: Data(row.utf8), headers: headers)
            #expect(queued.status == 202, "\(queued.text)")
            let id = try #require(Self.json(queued)["call_id"]?.stringValue)
            var call: JSONValue = .null
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                call = Self.json(try await G.get(fixture, "/api/v1/calls/\(id)", token: ingest))
                if ["succeeded", "failed"].contains(call["status"]?.stringValue ?? "") { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(call["status"]?.stringValue == "succeeded", "\(call)")
            // Nothing of the addresses is stored, in the call's events or its outcomes.
            let stored = try await fixture.clients.postgres.query("SELECT events::text || coalesce(outcomes::text, '') FROM async_calls WHERE id = \(id)::uuid")
            let text = try #require(stored.rows.first?[0])
            #expect(!text.contains("alice@example.com") && !text.contains("carol@example.com"), "\(text)")
            #expect(!text.isEmpty)

            // Only its creator and admin see the call.
            let other = try await G.cliToken(fixture, subject: "zt-other", roles: "ingest")
            #expect(try await G.get(fixture, "/api/v1/calls/\(id)", token: other).status == 404)
            let admin = try await G.cliToken(fixture, subject: "zt-admin", roles: "admin")
            #expect(try await G.get(fixture, "/api/v1/calls/\(id)", token: admin).status == 200)
        }
    }

    /// A job is visible to and cancellable by its creator and admin (analysts read all jobs, as
    /// the shipped manifest says); anyone else is answered as if it did not exist.
    @Test func jobsBelongToTheirCreator() async throws {
        try await G.with(db: 20) { fixture in
            let owner = try await G.cliToken(fixture, subject: "zt-owner", roles: "ingest")
            let other = try await G.cliToken(fixture, subject: "zt-other", roles: "ingest")
            let analyst = try await G.cliToken(fixture, subject: "zt-analyst", roles: "analyst")
            let admin = try await G.cliToken(fixture, subject: "zt-admin", roles: "admin")
            let now = ISO8601DateFormatter().string(from: Date())
            let event = #"{"metadata":{"event_id":"zt-job-1","timestamp":"\#(now)","version":"1","source":"zt"},"user":{"id":"u1"},"payload":{"event_type":"click"}}"#
            let upload = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/ingest"), body: Data(event.utf8),
                                                headers: ["Authorization": "Bearer \(owner)", "Content-Type": "application/x-ndjson"])
            #expect(upload.status == 202, "\(upload.text)")
            let job = try #require(Self.json(upload)["job_id"]?.stringValue)
            #expect(try await G.get(fixture, "/api/v1/jobs/\(job)", token: owner).status == 200)
            let hidden = try await G.get(fixture, "/api/v1/jobs/\(job)", token: other)
            #expect(hidden.status == 404 && Self.code(hidden) == "job_not_found")
            #expect(try await G.get(fixture, "/api/v1/jobs/\(job)", token: analyst).status == 200)
            // (admin reads jobs through the list: the gateway's manifest routes GET /api/v1/jobs/{id} to ingest and analyst.)
            // Lists hold one's own jobs only.
            func listed(_ token: String) async throws -> [String] {
                (Self.json(try await G.get(fixture, "/api/v1/jobs", token: token))["jobs"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
            }
            #expect(try await listed(owner) == [job])
            #expect(try await listed(other) == [])
            #expect(try await listed(admin) == [job])
            // Only the creator or admin cancels.
            let cancel = try await HTTP.request("DELETE", fixture.url("gateway", "/api/v1/jobs/\(job)"), headers: ["Authorization": "Bearer \(other)"])
            #expect(cancel.status == 404, "\(cancel.text)")
            let row = try await fixture.clients.postgres.query("SELECT status, created_by FROM jobs WHERE id = \(job)::uuid")
            #expect(row.rows.first?[0] != "cancelled")
            // The creator is stored as a digest, not as the subject.
            #expect(row.rows.first?[1] == SHA256.hex("zt-owner".utf8))
        }
    }

    /// `POST /invoke` of a stream function (load writes the warehouse) needs the gateway's assertion too.
    @Test func invokeNeedsTheGatewaysAssertion() async throws {
        try await G.with(db: 20) { fixture in
            try await fixture.start("load")
            let row = Data(#"[{"event_id": "zt-invoke", "user_id": "bob@example.com"}]"#.utf8)
            let refused = try await HTTP.request("POST", fixture.url("load", "/invoke"), body: row,
                                                 headers: ["Content-Type": "application/json", "X-Sluice-Assertion": "", "X-Sluice-Roles": "admin"])
            #expect(refused.status == 401 && Self.code(refused) == "caller_unverified", "\(refused.text)")
            let rows = try await fixture.clients.postgres.query("SELECT count(*) FROM events WHERE event_id = 'zt-invoke'")
            #expect(rows.scalar == "0")
        }
    }

    /// A function that serves routes refuses to start without the key to check its callers, and
    /// so does a gateway without the key to sign with.
    @Test func processesWithoutTheKeysRefuseToStart() async throws {
        let fixture = try await G.fixture(db: 20)
        for (name, variable) in [("warehouse", "SLUICE_GATEWAY_PUBLIC_KEY"), ("gateway", "SLUICE_GATEWAY_SIGNING_KEY")] {
            let process = try SluiceProcess(binary: fixture.environment.binary, arguments: ["serve", name, "--port", "\(freePort())", "--host", "127.0.0.1"],
                                            environment: fixture.processEnvironment.merging([
                                                "SLUICE_GATEWAY_PUBLIC_KEY": "", "SLUICE_GATEWAY_SIGNING_KEY": "", "SLUICE_JWT_SECRET": G.secret,
                                            ]) { $1 }, name: "\(name)-keyless", port: 0, logDirectory: fixture.directory)
            let status = await process.waitExit(timeout: .seconds(30))
            #expect(status != nil && status != 0, "\(name) without \(variable) did not refuse to start")
            #expect(process.log.contains(variable), "\(name): \(process.tail(5))")
        }
        await fixture.stopAll()
    }
}
