import Foundation
import Sluice
import SluiceHTTP
import SluiceNotify
import Testing

/// The gateway as its own `sluice serve gateway` process in front of `sluice serve ingest`
/// (SLUICE_UPSTREAM_INGEST), with real tokens over real HTTP.
@Suite("Gateway end to end", .serialized)
struct GatewayEndToEndTests {
    static let secret = "gateway-e2e-secret-0123456789abcdef"
    static let issuer = "https://issuer.sluice.test"
    static let audience = "sluice-e2e"

    /// The pipeline's manifests plus the repository's gateway manifest, with `replacing`
    /// applied to the gateway's.
    static func manifests(gateway replacing: [(String, String)] = []) throws -> [String: String] {
        // POST /api/v1/data waits 3 s for its record (the matrix runs no stages: it answers 202).
        var manifests = try PipelineFixture.pipelineManifests(overrides: ["ingest": [("record_wait: 10s", "record_wait: 3s")]])
        let root = try TestEnvironment.get().packageRoot
        var text = try String(contentsOfFile: "\(root)/functions/gateway/function.yaml", encoding: .utf8)
        for (of, with) in replacing {
            guard text.contains(of) else { throw TestSetupError("the gateway manifest has no '\(of)'") }
            text = text.replacingOccurrences(of: of, with: with)
        }
        manifests["gateway"] = text
        manifests["warehouse"] = try String(contentsOfFile: "\(root)/functions/warehouse/function.yaml", encoding: .utf8)
        manifests["calls"] = try String(contentsOfFile: "\(root)/functions/calls/function.yaml", encoding: .utf8)
        manifests["privacy"] = try String(contentsOfFile: "\(root)/functions/privacy/function.yaml", encoding: .utf8)
        return manifests
    }

    /// Starts ingest and a gateway in front of it (HS256, issuer and audience checked).
    static func fixture(db: Int, gateway replacing: [(String, String)] = []) async throws -> PipelineFixture {
        let fixture = try await PipelineFixture(db: db, manifests: try manifests(gateway: replacing))
        // The tests' callback receivers listen on 127.0.0.1, which callers may not name otherwise.
        fixture.extraEnvironment = ["SLUICE_JWT_ISSUER": issuer, "SLUICE_JWT_AUDIENCE": audience, "SLUICE_CALLBACK_ALLOW_HOSTS": "127.0.0.1"]
        try await fixture.start("ingest")
        try await fixture.start("warehouse")
        try await fixture.start("calls")
        try await fixture.start("privacy")
        try await fixture.start("gateway", environment: ["SLUICE_JWT_SECRET": secret].merging(upstreams(fixture)) { $1 })
        return fixture
    }

    /// Where a gateway finds the functions the fixture runs.
    static func upstreams(_ fixture: PipelineFixture) -> [String: String] {
        ["SLUICE_UPSTREAM_INGEST": fixture.url("ingest", ""), "SLUICE_UPSTREAM_WAREHOUSE": fixture.url("warehouse", ""),
         "SLUICE_UPSTREAM_CALLS": fixture.url("calls", ""), "SLUICE_UPSTREAM_PRIVACY": fixture.url("privacy", "")]
    }

    static func with(db: Int, gateway replacing: [(String, String)] = [], _ body: (PipelineFixture) async throws -> Void) async throws {
        let fixture = try await fixture(db: db, gateway: replacing)
        let result: Result<Void, any Error>
        do { result = .success(try await body(fixture)) } catch { result = .failure(error) }
        await fixture.stopAll()
        try result.get()
    }

    /// A token from `sluice token`, as a user would make one.
    static func cliToken(_ fixture: PipelineFixture, subject: String, roles: String, extra: [String: String] = [:], arguments: [String] = []) async throws -> String {
        let environment = ["SLUICE_JWT_SECRET": secret, "SLUICE_JWT_ISSUER": issuer, "SLUICE_JWT_AUDIENCE": audience].merging(extra) { $1 }
        let result = try await runCommand(fixture.environment.binary, ["token", "--subject", subject, "--roles", roles] + arguments,
                                          environment: environment)
        guard result.status == 0 else { throw TestSetupError("sluice token failed: \(result.error)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func claims(subject: String = "e2e-user", roles: [String] = ["ingest"], _ extra: JSONObject = [:], dropping: [String] = []) -> JSONObject {
        let now = Int64(Date().timeIntervalSince1970)
        var claims: JSONObject = [
            "sub": .string(subject), "roles": .array(roles.map { .string($0) }),
            "iss": .string(issuer), "aud": .string(audience), "iat": .int(now), "exp": .int(now + 600),
        ]
        for (key, value) in extra { claims[key] = value }
        for key in dropping { claims[key] = nil }
        return claims
    }

    static func hs256(_ claims: JSONObject, secret: String = GatewayEndToEndTests.secret) throws -> String {
        try JWTSigner.sign(claims: claims, algorithm: .hs256, key: Array(secret.utf8))
    }

    static func get(_ fixture: PipelineFixture, _ path: String, via gateway: String = "gateway", token: String?, headers: [String: String] = [:]) async throws -> HTTP.Response {
        var headers = headers
        if let token { headers["Authorization"] = "Bearer \(token)" }
        return try await HTTP.request("GET", fixture.url(gateway, path), headers: headers)
    }

    static func problemCode(_ response: HTTP.Response) -> String? {
        guard response.headers["content-type"] == "application/problem+json" else { return nil }
        return (try? JSONParser().parse(Array(response.body)))?["code"]?.stringValue
    }

    @Test func theTokenCorpusIsAnswered401AndValidTokensPass() async throws {
        try await Self.with(db: 13) { fixture in
            let valid = try await Self.cliToken(fixture, subject: "corpus", roles: "ingest,admin")
            let ok = try await Self.get(fixture, "/api/v1/jobs", token: valid)
            #expect(ok.status == 200, "\(ok.text)")
            #expect(ok.headers["x-request-id"]?.isEmpty == false)

            let parts = valid.split(separator: ".").map(String.init)
            let tampered = Base64URL.encode(JSONValue.object(Self.claims(subject: "corpus", roles: ["admin"])).serializedBytes)
            let none = Base64URL.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(JSONValue.object(Self.claims()).serializedBytes) + "."
            let now = Int64(Date().timeIntervalSince1970)
            let corpus: [(String, String?, String)] = [
                ("no token", nil, "missing_token"),
                ("malformed", "not.a-token", "invalid_token"),
                ("alg none", none, "invalid_token"),
                ("alg none, with a signature", none + "c2lnbmF0dXJl", "invalid_token"),
                ("bad signature", try Self.hs256(Self.claims(), secret: "another-secret-another-secret-12345"), "invalid_token"),
                ("expired", try Self.hs256(Self.claims(["exp": .int(now - 120)])), "invalid_token"),
                ("nbf in the future", try Self.hs256(Self.claims(["nbf": .int(now + 3600)])), "invalid_token"),
                ("no exp", try Self.hs256(Self.claims(dropping: ["exp"])), "invalid_token"),
                ("wrong iss", try Self.hs256(Self.claims(["iss": "https://evil.example"])), "invalid_token"),
                ("wrong aud", try Self.hs256(Self.claims(["aud": "someone-else"])), "invalid_token"),
                ("tampered claims", "\(parts[0]).\(tampered).\(parts[2])", "invalid_token"),
            ]
            for (name, token, code) in corpus {
                let response = try await Self.get(fixture, "/api/v1/jobs", token: token)
                #expect(response.status == 401, "\(name): \(response.status) \(response.text)")
                #expect(Self.problemCode(response) == code, "\(name): \(response.text)")
                let challenge = response.headers["www-authenticate"] ?? ""
                #expect(challenge.hasPrefix("Bearer ") && challenge.contains(#"error="invalid_token""#), "\(name): \(challenge)")
                // The answer names no internals: no claim values, no library names.
                #expect(!response.text.contains("libjwt") && !response.text.contains("corpus") && !response.text.contains("evil"), "\(name): \(response.text)")
            }
            let expired = try await Self.get(fixture, "/api/v1/jobs", token: try Self.hs256(Self.claims(["exp": .int(now - 120)])))
            #expect(expired.headers["www-authenticate"]?.contains("expired") == true)
            // A scheme other than Bearer is refused the same way.
            let basic = try await HTTP.request("GET", fixture.url("gateway", "/api/v1/jobs"), headers: ["Authorization": "Basic dXNlcjpwYXNz"])
            #expect(basic.status == 401)

            // Every refusal is counted by its reason, every request by route and status; no label
            // holds a token, a subject or a path.
            let text = try await HTTP.request("GET", fixture.url("gateway", "/metrics")).text
            let series = metricSeries(text)
            #expect(series[#"sluice_gateway_requests_total{method="GET",route="/api/v1/jobs",status="200"}"#] == 1)
            #expect(series[#"sluice_gateway_requests_total{method="GET",route="/api/v1/jobs",status="401"}"#] == 13)
            #expect(series[#"sluice_gateway_request_duration_seconds_count{route="/api/v1/jobs"}"#] == 14)
            #expect(series[#"sluice_gateway_auth_failures_total{reason="expired"}"#] == 2)
            for reason in ["missing", "not_yet_valid", "missing_exp", "wrong_issuer", "wrong_audience"] {
                #expect(series["sluice_gateway_auth_failures_total{reason=\"\(reason)\"}"] == 1, "\(reason)")
            }
            #expect(series[#"sluice_gateway_auth_failures_total{reason="bad_signature"}"#] == 2, "another key, and tampered claims")
            let refusals = series.filter { $0.key.hasPrefix("sluice_gateway_auth_failures_total{") }.values.reduce(0, +)
            #expect(refusals == 13, "\(series.filter { $0.key.hasPrefix("sluice_gateway_auth_failures_total") })")
            #expect(!text.contains("corpus") && !text.contains("Bearer") && !text.contains("evil"))

            // A role that a comma-joined header would have split into `admin` is refused, naming the claim.
            let comma = try await Self.get(fixture, "/api/v1/audit", token: try Self.hs256(Self.claims(roles: ["ingest", "x,admin"])))
            #expect(comma.status == 400, "\(comma.text)")
            #expect(Self.problemCode(comma) == "invalid_token")
            #expect((try? JSONParser().parse(Array(comma.body)))?["claim"] == "roles")
        }
    }

    @Test func rs256GatewayRefusesAlgorithmConfusionAndPassesRS256() async throws {
        try await Self.with(db: 13) { fixture in
            let keys = try makeTemporaryDirectory("rsa")
            defer { try? FileManager.default.removeItem(atPath: keys) }
            for arguments in [["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "\(keys)/private.pem"],
                              ["pkey", "-in", "\(keys)/private.pem", "-pubout", "-out", "\(keys)/public.pem"]] {
                let result = try await runCommand("/usr/bin/openssl", arguments)
                try #require(result.status == 0, "openssl: \(result.error)")
            }
            // This gateway's "ingest" answers with the headers and the body's digest it received:
            // what a function (or a compromised function pod) sees of a caller.
            let echoPort = freePort()
            let echo = """
                import hashlib, http.server, json, sys
                class Handler(http.server.BaseHTTPRequestHandler):
                    def answer(self):
                        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                        seen = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()},
                                           "sha256": hashlib.sha256(body).hexdigest()}).encode()
                        self.send_response(200)
                        self.send_header('Content-Type', 'application/json')
                        self.send_header('Content-Length', str(len(seen)))
                        self.end_headers()
                        self.wfile.write(seen)
                    do_GET = do_POST = answer
                    def log_message(self, *args):
                        pass
                http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
                """
            let receiver = try Child("/usr/bin/python3", ["-c", echo, "\(echoPort)"], environment: [:],
                                     stdout: "\(fixture.directory)/echo.log", stderr: "\(fixture.directory)/echo.log")
            defer { kill(receiver.pid, SIGKILL); _ = receiver.poll() }
            try await fixture.start("gateway", as: "gateway-rs", environment: [
                "SLUICE_JWT_SECRET": "", "SLUICE_JWT_PUBLIC_KEY": "\(keys)/public.pem",
            ].merging(Self.upstreams(fixture)) { $1 }.merging(["SLUICE_UPSTREAM_INGEST": "http://127.0.0.1:\(echoPort)"]) { $1 })
            let rs = try await Self.cliToken(fixture, subject: "rs-user", roles: "ingest", extra: ["SLUICE_JWT_SECRET": ""],
                                             arguments: ["--key", "\(keys)/private.pem"])
            let passed = try await Self.get(fixture, "/api/v1/jobs", via: "gateway-rs", token: rs,
                                            headers: ["Cookie": "session=caller-secret", "X-Sluice-Debug": "1", "X-Sluice-Roles": "admin",
                                                      "tracestate": "vendor=1"])
            #expect(passed.status == 200, "\(passed.text)")
            // The function gets the allow-listed headers and the assertion, never the caller's credentials.
            let seen = try JSONParser().parse(Array(passed.body))
            let headers = Set(seen["headers"]?.objectValue?.map(\.key) ?? [])
            for gone in ["authorization", "cookie", "x-sluice-debug", "x-sluice-roles"] { #expect(!headers.contains(gone), "\(gone) reached the function") }
            #expect(headers.isSuperset(of: ["x-sluice-assertion", "x-request-id", "traceparent", "tracestate"]), "\(headers)")
            // The assertion is for ingest alone, this request, the empty body, and the roles as a list.
            let assertion = seen["headers"]?["x-sluice-assertion"]?.stringValue ?? ""
            let payload = try JSONParser().parse(Base64URL.decode(assertion.split(separator: ".").dropFirst().first.map { Array($0.utf8) } ?? []) ?? [])
            #expect(payload["aud"] == ["ingest"])
            #expect(payload["roles"] == ["ingest"])
            #expect(payload["target"] == "/api/v1/jobs")
            #expect(payload["bdy"] == .string("sha256:\(seen["sha256"]?.stringValue ?? "?")"))
            #expect((payload["exp"]?.intValue ?? 0) - (payload["iat"]?.intValue ?? 0) == 60)
            // A body is bound by the digest of exactly what the function receives.
            let posted = try await HTTP.request("POST", fixture.url("gateway-rs", "/api/v1/process/transform"), body: Data("[{\"a\":1}]".utf8),
                                                headers: ["Authorization": "Bearer \(rs)", "Content-Type": "application/json"])
            let postedSeen = try JSONParser().parse(Array(posted.body))
            let postedAssertion = postedSeen["headers"]?["x-sluice-assertion"]?.stringValue ?? ""
            let postedPayload = try JSONParser().parse(Base64URL.decode(postedAssertion.split(separator: ".").dropFirst().first.map { Array($0.utf8) } ?? []) ?? [])
            #expect(postedSeen["sha256"] == .string(SHA256.hex(Array("[{\"a\":1}]".utf8))))
            #expect(postedPayload["bdy"] == .string("sha256:\(SHA256.hex(Array("[{\"a\":1}]".utf8)))"))

            // HS256 with the RSA public key as the HMAC secret: the classic confusion attack.
            let publicPEM = try Data(contentsOf: URL(fileURLWithPath: "\(keys)/public.pem"))
            let confused = try JWTSigner.sign(claims: Self.claims(subject: "rs-user"), algorithm: .hs256, key: [UInt8](publicPEM))
            let refused = try await Self.get(fixture, "/api/v1/jobs", via: "gateway-rs", token: confused)
            #expect(refused.status == 401)
            #expect(Self.problemCode(refused) == "invalid_token")
            // And the HS256 gateway refuses the RS256 token.
            #expect(try await Self.get(fixture, "/api/v1/jobs", token: rs).status == 401)
        }
    }

    /// The contract's routes and roles (DESIGN.md), as the gateway manifest declares them.
    static let matrix: [(method: String, path: String, roles: Set<String>)] = [
        ("POST", "/api/v1/ingest", ["ingest"]),
        ("GET", "/api/v1/jobs/{id}", ["ingest", "analyst"]),
        ("GET", "/api/v1/jobs", ["ingest", "admin"]),
        ("DELETE", "/api/v1/jobs/{id}", ["ingest", "admin"]),
        ("POST", "/api/v1/process/transform", ["ingest"]),
        ("POST", "/api/v1/data", ["ingest"]),
        ("GET", "/api/v1/data/{event_id}", ["analyst"]),
        ("PUT", "/api/v1/data/{event_id}", ["admin"]),
        ("DELETE", "/api/v1/data/{event_id}", ["admin"]),
        ("GET", "/api/v1/analytics/summary", ["analyst"]),
        ("POST", "/api/v1/functions/{name}/async", ["ingest", "admin"]),
        ("GET", "/api/v1/calls/{id}", ["ingest", "admin"]),
        ("PUT", "/api/v1/consents/{subject}", ["admin"]),
        ("GET", "/api/v1/consents/{subject}", ["admin"]),
        ("DELETE", "/api/v1/subjects/{subject}", ["admin"]),
        ("GET", "/api/v1/audit", ["admin"]),
    ]

    @Test func everyRouteAnswersEveryRoleAsTheManifestDeclares() async throws {
        try await Self.with(db: 13) { fixture in
            let event = #"{"metadata":{"event_id":"matrix-1","timestamp":"\#(ISO8601DateFormatter().string(from: Date()))","version":"1","source":"e2e"},"user":{"id":"u1"},"payload":{"event_type":"click"}}"#
            var tokens: [String: String] = [:]
            for role in ["ingest", "analyst", "admin"] {
                tokens[role] = try await Self.cliToken(fixture, subject: "matrix-\(role)", roles: role)
            }
            // The manifest declares exactly the matrix.
            let manifest = try String(contentsOfFile: "\(fixture.functionsDirectory)/gateway/function.yaml", encoding: .utf8)
            for route in Self.matrix {
                let line = manifest.split(separator: "\n").first { $0.contains("method: \(route.method),") && $0.contains("\"\(route.path)\"") }
                let declared = line.flatMap { line -> Set<String>? in
                    guard let start = line.range(of: "roles: [")?.upperBound else { return nil }
                    return Set(line[start...].prefix { $0 != "]" }.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                }
                #expect(declared == route.roles, "\(route.method) \(route.path): \(line.map(String.init) ?? "missing")")
            }

            for route in Self.matrix {
                for role in ["ingest", "analyst", "admin"] {
                    // Each call gets a job of its own (a cancelled job cannot be cancelled again), made
                    // by the caller (a job is its creator's: ingest is handed the caller as the gateway would).
                    let uploadURL = fixture.url("ingest", "/api/v1/ingest"), callURL = fixture.url("calls", "/api/v1/functions/validate/async")
                    let upload = try await HTTP.request("POST", uploadURL, body: Data(event.utf8), headers: [
                        "Content-Type": "application/x-ndjson",
                        "X-Sluice-Assertion": TestCaller.assertion(method: "POST", url: uploadURL, subject: "matrix-\(role)", roles: [role]),
                    ])
                    let job = try JSONParser().parse(Array(upload.body))["job_id"]?.stringValue ?? ""
                    // And a warehouse record of its own (a deleted record cannot be deleted again).
                    // Its id holds an e-mail address, as a path a caller types may: the audit log must not keep it.
                    let record = "matrix-\(UUID().uuidString.prefix(8))-jane.doe@example.com"
                    try await fixture.clients.postgres.query(
                        "INSERT INTO events (event_id, event_type, event_time, user_id, received_at) VALUES (\(record), 'click', now(), 'u1', now())")
                    // And a call of its own.
                    let queued = try await HTTP.request("POST", callURL, body: Data("[]".utf8), headers: [
                        "Content-Type": "application/json",
                        "X-Sluice-Assertion": TestCaller.assertion(method: "POST", url: callURL, subject: "matrix-\(role)", roles: [role]),
                    ])
                    let call = try JSONParser().parse(Array(queued.body))["call_id"]?.stringValue ?? ""
                    let path = route.path.replacingOccurrences(of: "{id}", with: route.path.hasPrefix("/api/v1/calls") ? call : job)
                        .replacingOccurrences(of: "{event_id}", with: record).replacingOccurrences(of: "{name}", with: "validate")
                        .replacingOccurrences(of: "{subject}", with: "matrix-subject-\(role)")
                    var headers = ["Authorization": "Bearer \(tokens[role]!)"]
                    var body: Data?
                    if route.path.hasSuffix("/async") {
                        headers["Content-Type"] = "application/json"
                        body = Data("[\(event)]".utf8)
                    } else if route.path == "/api/v1/data" {
                        headers["Content-Type"] = "application/json"
                        body = Data(event.replacingOccurrences(of: "matrix-1", with: "matrix-post-\(UUID().uuidString)").utf8)
                    } else if route.method == "POST" {
                        headers["Content-Type"] = route.path.hasSuffix("/ingest") ? "application/x-ndjson" : "application/json"
                        body = Data((route.path.hasSuffix("/ingest") ? event : "[\(event)]").utf8)
                    } else if route.method == "PUT" && route.path.hasPrefix("/api/v1/consents") {
                        headers["Content-Type"] = "application/json"
                        body = Data(#"{"purpose": "analytics", "granted": true}"#.utf8)
                    } else if route.method == "PUT" {
                        headers["Content-Type"] = "application/json"
                        body = Data(#"{"event_type": "corrected", "user_id": "u1"}"#.utf8)
                    }
                    let response = try await HTTP.request(route.method, fixture.url("gateway", path), body: body, headers: headers)
                    if route.roles.contains(role) {
                        // No stage runs here: an upload is accepted (202), and so is a record whose fate is not known in time.
                        let expected = route.path.hasSuffix("/ingest") || route.path == "/api/v1/data" || route.path.hasSuffix("/async") ? 202
                            : route.method == "DELETE" && route.path.hasPrefix("/api/v1/data") ? 204 : 200
                        #expect(response.status == expected, "\(role) \(route.method) \(route.path): \(response.status) \(response.text)")
                    } else {
                        #expect(response.status == 403, "\(role) \(route.method) \(route.path): \(response.status) \(response.text)")
                        #expect(Self.problemCode(response) == "forbidden")
                    }
                }
            }
            // Every call that reached a function through the gateway wrote one audit row naming the
            // caller, with the gateway's request id; refused calls none (the setup's uploads and
            // calls, made on the functions' own ports, carry no request id). A subject in a path is
            // stored as its pseudonym.
            let audit = try await fixture.clients.postgres.query(
                "SELECT actor, count(*), count(request_id) FROM audit_log WHERE actor LIKE 'matrix-%' AND request_id IS NOT NULL GROUP BY actor")
            var audited: [String: [Int]] = [:]
            for row in audit.rows { audited[row[0] ?? ""] = [Int(row[1] ?? "") ?? -1, Int(row[2] ?? "") ?? -1] }
            for role in ["ingest", "analyst", "admin"] {
                let allowed = Self.matrix.filter { $0.roles.contains(role) }.count
                #expect(audited["matrix-\(role)"] == [allowed, allowed], "audit rows of \(role)")
            }
            let plain = try await fixture.clients.postgres.query("SELECT count(*) FROM audit_log WHERE resource LIKE '%matrix-subject%'")
            #expect(plain.scalar == "0")
            // Rows name the route's template and its parameters masked: the address typed into the
            // record's path is nowhere in the table, its keyed pseudonym is.
            let raw = try await fixture.clients.postgres.query(
                "SELECT count(*) FROM audit_log WHERE resource LIKE '%example.com%' OR detail::text LIKE '%example.com%' OR resource LIKE '%matrix-%'")
            #expect(raw.scalar == "0")
            let templated = try await fixture.clients.postgres.query(
                "SELECT detail->'parameters'->>'event_id' FROM audit_log WHERE actor = 'matrix-analyst' AND action = 'getRecord'")
            #expect(templated.rows.count == 1)
            let parameter = templated.rows.first?.first ?? nil
            #expect(parameter?.hasPrefix("<EMAIL:") == true, "\(String(describing: parameter))")
            // Outside the declared routes: 404, and 405 naming the methods a path takes.
            let unknown = try await Self.get(fixture, "/api/v1/nothing-here", token: tokens["admin"])
            #expect(unknown.status == 404)
            #expect(Self.problemCode(unknown) == "not_found")
            let wrongMethod = try await HTTP.request("PUT", fixture.url("gateway", "/api/v1/ingest"), headers: ["Authorization": "Bearer \(tokens["ingest"]!)"])
            #expect(wrongMethod.status == 405)
            #expect(wrongMethod.headers["allow"] == "POST")
        }
    }

    @Test func twoGatewaysShareOneRateLimitBudget() async throws {
        try await Self.with(db: 13, gateway: [("ingest:  {per_second: 100, burst: 200}", "ingest:  {per_second: 0.01, burst: 10}")]) { fixture in
            try await fixture.start("gateway", as: "gateway-2", environment: ["SLUICE_JWT_SECRET": Self.secret].merging(Self.upstreams(fixture)) { $1 })
            let token = try await Self.cliToken(fixture, subject: "burst-user", roles: "ingest")
            var statuses: [Int] = []
            var last: HTTP.Response?
            for i in 0..<16 {
                let response = try await Self.get(fixture, "/api/v1/jobs", via: i % 2 == 0 ? "gateway" : "gateway-2", token: token)
                statuses.append(response.status)
                if i == 9 { #expect(response.headers["ratelimit-remaining"] == "0") }
                last = response
            }
            #expect(statuses == Array(repeating: 200, count: 10) + Array(repeating: 429, count: 6), "\(statuses)")
            let refused = try #require(last)
            #expect(Self.problemCode(refused) == "rate_limited")
            let retryAfter = Int(refused.headers["retry-after"] ?? "") ?? 0
            #expect(retryAfter >= 90 && retryAfter <= 100, "Retry-After \(retryAfter) (one token per 100 s)")
            #expect(refused.headers["ratelimit-limit"] == "10")
            #expect(refused.headers["ratelimit-remaining"] == "0")
            // Each gateway counted the three requests it refused.
            for name in ["gateway", "gateway-2"] {
                let series = metricSeries(try await HTTP.request("GET", fixture.url(name, "/metrics")).text)
                #expect(series[#"sluice_gateway_rate_limited_total{route="/api/v1/jobs"}"#] == 3, "\(name)")
                #expect(series[#"sluice_gateway_requests_total{method="GET",route="/api/v1/jobs",status="429"}"#] == 3, "\(name)")
                #expect(series[#"sluice_gateway_requests_total{method="GET",route="/api/v1/jobs",status="200"}"#] == 5, "\(name)")
            }
            // The budget is per subject: another caller is not held back.
            let other = try await Self.cliToken(fixture, subject: "another-user", roles: "ingest")
            #expect(try await Self.get(fixture, "/api/v1/jobs", via: "gateway-2", token: other).status == 200)

            // A gateway whose Redis is unreachable lets requests pass, the spent caller included
            // (a limiter outage must not take the API down), and says it is not ready.
            let port = freePort()
            let blind = try SluiceProcess.serve("gateway", port: port, environment: fixture.processEnvironment.merging(
                ["SLUICE_JWT_SECRET": Self.secret, "SLUICE_REDIS_URL": "redis://127.0.0.1:1/0"].merging(Self.upstreams(fixture)) { $1 }) { $1 },
                in: fixture.directory, binary: fixture.environment.binary)
            fixture.processes["gateway-blind"] = blind
            fixture.ports["gateway-blind"] = port
            var live = false
            for _ in 0..<200 where !live {
                live = (try? await HTTP.request("GET", fixture.url("gateway-blind", "/health/live")))?.status == 200
                if !live { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(live, "\(blind.tail())")
            #expect(try await HTTP.request("GET", fixture.url("gateway-blind", "/health/ready")).status == 503)
            let passed = try await Self.get(fixture, "/api/v1/jobs", via: "gateway-blind", token: token)
            #expect(passed.status == 200, "\(passed.text)")
            #expect(passed.headers["ratelimit-remaining"] == nil)
            #expect(blind.log.components(separatedBy: "rate limiter unavailable").count == 2, "one warning per outage")
        }
    }

    @Test func aKilledUpstreamAnswersAProblemWithinSeconds() async throws {
        try await Self.with(db: 13) { fixture in
            let token = try await Self.cliToken(fixture, subject: "upstream-user", roles: "ingest")
            #expect(try await Self.get(fixture, "/api/v1/jobs", token: token).status == 200)
            fixture.processes["ingest"]!.signal(SIGKILL)
            _ = await fixture.processes["ingest"]!.waitExit(timeout: .seconds(5))
            let started = ContinuousClock.now
            let response = try await Self.get(fixture, "/api/v1/jobs", token: token)
            let elapsed = ContinuousClock.now - started
            #expect([502, 503, 504].contains(response.status), "\(response.status) \(response.text)")
            #expect(Self.problemCode(response) == "upstream_unavailable")
            #expect(elapsed < .seconds(5), "answered after \(elapsed)")
            // The gateway itself stays up and ready.
            #expect(try await HTTP.request("GET", fixture.url("gateway", "/health/live")).status == 200)
        }
    }

    @Test func anUpstreamAnsweringBeforeTheBodyEndsLeavesTheGatewayUp() async throws {
        // Ingest refuses an unknown format (415) before reading the body: the gateway must stop
        // sending the rest, pass the answer on and stay up (it once crashed here: the upload and
        // the server's drain of the leftover body read it at once).
        try await Self.with(db: 13) { fixture in
            let path = "\(fixture.directory)/blob.bin"
            try Data(repeating: 0x41, count: 8 << 20).write(to: URL(fileURLWithPath: path))
            let token = try await Self.cliToken(fixture, subject: "early-user", roles: "ingest")
            for attempt in 0..<12 {
                let result = try await runCommand("/usr/bin/curl", [
                    "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(token)",
                    "-H", "Content-Type: application/octet-stream", "--data-binary", "@\(path)", fixture.url("gateway", "/api/v1/ingest"),
                ], timeout: .seconds(60))
                #expect(result.output == "415", "attempt \(attempt): \(result.output) \(result.error)")
            }
            #expect(fixture.processes["gateway"]!.isRunning, "\(fixture.processes["gateway"]!.tail())")
            #expect(try await Self.get(fixture, "/api/v1/jobs", token: token).status == 200)
        }
    }

    @Test func underSluiceDevTheGatewayGuardsTheFunctionsInProcess() async throws {
        let fixture = try await PipelineFixture(db: 13, manifests: try Self.manifests())
        let port = freePort()
        let dev = try SluiceProcess(binary: fixture.environment.binary, arguments: ["dev", "--port", "\(port)"],
                                    environment: fixture.processEnvironment.merging(["SLUICE_JWT_SECRET": Self.secret, "SLUICE_LOG_LEVEL": "debug"]) { $1 },
                                    name: "dev", port: port, logDirectory: fixture.directory)
        fixture.processes["dev"] = dev
        fixture.ports["dev"] = port
        let result: Result<Void, any Error>
        do {
            result = .success(try await {
                try await dev.waitReady()
                let token = try Self.hs256(Self.claims(subject: "dev-user", roles: ["ingest", "analyst"], dropping: ["iss", "aud"]))
                #expect(try await HTTP.request("GET", fixture.url("dev", "/health/live")).status == 200)
                let refused = try await Self.get(fixture, "/api/v1/jobs", via: "dev", token: nil)
                #expect(refused.status == 401)
                // Every spelling of a path meets the gateway's check (the router drops empty segments).
                for path in ["//api/v1/audit", "/api//v1/audit", "/api/v1/./audit", "//api//v1//jobs"] {
                    let raw = try await RawHTTP.exchange(port: port, RawHTTP.request("GET", path, headers: [("X-Sluice-Assertion", "")]))
                    #expect(raw.status == 401, "\(path) answered \(raw.status) under sluice dev")
                }
                // The functions' own routes need the gateway's assertion too, in one process as in many.
                let invoke = try await HTTP.request("POST", fixture.url("dev", "/invoke/validate"), body: Data("[]".utf8),
                                                    headers: ["Content-Type": "application/json", "X-Sluice-Assertion": "", "X-Sluice-Roles": "admin"])
                #expect(invoke.status == 401, "\(invoke.text)")
                let event = #"{"metadata":{"event_id":"dev-1","timestamp":"\#(ISO8601DateFormatter().string(from: Date()))","version":"1","source":"e2e"},"user":{"id":"u1"},"payload":{"event_type":"click"}}"#
                let upload = try await HTTP.request("POST", fixture.url("dev", "/api/v1/ingest"), body: Data(event.utf8), headers: [
                    "Authorization": "Bearer \(token)", "Content-Type": "application/x-ndjson", "X-Request-Id": "dev-request-42",
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ])
                #expect(upload.status == 202, "\(upload.text)")
                #expect(upload.headers["x-request-id"] == "dev-request-42")
                let job = try #require(try JSONParser().parse(Array(upload.body))["job_id"]?.stringValue)
                let deadline = ContinuousClock.now + .seconds(60)
                var status = ""
                while ContinuousClock.now < deadline {
                    let answer = try await Self.get(fixture, "/api/v1/jobs/\(job)", via: "dev", token: token)
                    status = (try? JSONParser().parse(Array(answer.body)))?["status"]?.stringValue ?? ""
                    if status == "completed" { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(status == "completed")
                #expect(try await fixture.warehouseRows(job: job) == 1)
                // Every stage logged the chunk, as a JSON line, with the caller's trace id.
                let traced = jsonLogLines(dev.log).filter { $0["msg"] == "chunk acknowledged" && $0["trace"] == "4bf92f3577b34da6a3ce929d0e0e4736" }
                #expect(Set(traced.compactMap { $0["function"] }).isSuperset(of: ["validate", "enrich", "transform", "load"]),
                        "traced lines: \(traced)")
                let stages: Set<String?> = ["validate", "enrich", "transform", "load"]
                #expect(traced.filter { stages.contains($0["function"]) }.allSatisfy { $0["job"] == job }, "every stage's traced line names the job")
                // The job's end, announced on the jobs stream, carries the trace on to job-recorder and notify.
                #expect(traced.contains { $0["function"] == "jobs" }, "traced lines: \(traced.map { $0["function"] ?? "?" })")
            }())
        } catch {
            result = .failure(error)
        }
        await fixture.stopAll()
        try result.get()
    }

    @Test func recordsAndTheAnalyticsSummaryAnswerFromTheWarehouse() async throws {
        try await Self.with(db: 13) { fixture in
            try await fixture.startPipeline(except: ["ingest"])
            let workload = try await GeneratedWorkload.make(count: 3000, seed: 77, format: "ndjson", in: fixture.directory)
            let ingest = try await Self.cliToken(fixture, subject: "wh-ingest", roles: "ingest")
            let analyst = try await Self.cliToken(fixture, subject: "wh-analyst", roles: "analyst")
            // Replacing or deleting an event is admin's (events has no owner); ingest is refused.
            let admin = try await Self.cliToken(fixture, subject: "wh-admin", roles: "admin")
            let upload = try await runCommand("/usr/bin/curl", [
                "-sS", "-H", "Authorization: Bearer \(ingest)", "-H", "Content-Type: application/x-ndjson",
                "--data-binary", "@\(workload.path)", fixture.url("gateway", "/api/v1/ingest"),
            ])
            let job = try #require(try JSONParser().parse(Array(upload.output.utf8))["job_id"]?.stringValue, "\(upload.output)")
            let done = try await fixture.waitForJob(job)
            #expect(done.count("loaded") == workload.expected["loaded"])
            let postgres = fixture.clients.postgres

            // One record through the whole pipeline, answered with its fate.
            func post(_ event: String) async throws -> HTTP.Response {
                try await HTTP.request("POST", fixture.url("gateway", "/api/v1/data"), body: Data(event.utf8),
                                       headers: ["Authorization": "Bearer \(ingest)", "Content-Type": "application/json"])
            }
            let now = ISO8601DateFormatter().string(from: Date())
            let fresh = #"{"metadata":{"event_id":"one-record-1","timestamp":"\#(now)","version":"1","source":"e2e"},"user":{"id":"u-1"},"context":{"location":{"country":"DE"}},"payload":{"event_type":"Signup"}}"#
            let created = try await post(fresh)
            #expect(created.status == 201, "\(created.text)")
            #expect(created.headers["location"] == "/api/v1/data/one-record-1")
            let posted = try await Self.get(fixture, "/api/v1/data/one-record-1", token: analyst)
            #expect(posted.status == 200)
            let postedRecord = try JSONParser().parse(Array(posted.body))
            #expect(postedRecord["event_type"]?.stringValue == "signup")  // transformed: lowercased
            #expect(postedRecord["country_name"]?.stringValue == "Germany")  // enriched
            let again = try await post(fresh)
            #expect(again.status == 409 && Self.problemCode(again) == "duplicate_event", "\(again.text)")
            let malformed = try await post(#"{"metadata":{"event_id":"one-record-2","timestamp":"\#(now)"},"user":{"id":"u-2"},"payload":{}}"#)
            #expect(malformed.status == 422 && Self.problemCode(malformed) == "quarantined", "\(malformed.text)")
            #expect(try JSONParser().parse(Array(malformed.body))["reason"]?.stringValue == "missing_field")
            let stale = try await post(fresh.replacingOccurrences(of: now, with: "2020-01-01T00:00:00Z").replacingOccurrences(of: "one-record-1", with: "one-record-3"))
            #expect(stale.status == 422 && Self.problemCode(stale) == "stale", "\(stale.text)")
            #expect(try await post("[1]").status == 400)

            // One record, as stored.
            let sample = try #require(try await postgres.query("SELECT event_id, user_id FROM events WHERE job_id = \(job)::uuid ORDER BY event_id LIMIT 1").rows.first)
            let eventID = try #require(sample[0])
            let path = "/api/v1/data/\(eventID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!)"
            let got = try await Self.get(fixture, path, token: analyst)
            #expect(got.status == 200, "\(got.text)")
            let record = try JSONParser().parse(Array(got.body))
            #expect(record["event_id"]?.stringValue == eventID)
            #expect(record["job_id"]?.stringValue == job)
            #expect(record["user_id"]?.stringValue == sample[1])
            #expect(try await Self.get(fixture, "/api/v1/data/no-such-event", token: analyst).status == 404)

            // Replace: columns left out become null; fixed columns cannot change.
            func put(_ body: String) async throws -> HTTP.Response {
                try await HTTP.request("PUT", fixture.url("gateway", path), body: Data(body.utf8),
                                       headers: ["Authorization": "Bearer \(admin)", "Content-Type": "application/json"])
            }
            let byIngest = try await HTTP.request("PUT", fixture.url("gateway", path), body: Data(#"{"event_type": "x"}"#.utf8),
                                                  headers: ["Authorization": "Bearer \(ingest)", "Content-Type": "application/json"])
            #expect(byIngest.status == 403 && Self.problemCode(byIngest) == "forbidden", "\(byIngest.text)")
            let replaced = try await put(#"{"event_type": "corrected", "user_id": "u-42", "properties": {"fixed": true}, "job_id": "\#(job)"}"#)
            #expect(replaced.status == 200, "\(replaced.text)")
            let stored = try await postgres.query("SELECT event_type, user_id, properties::text, country, job_id::text FROM events WHERE event_id = \(eventID)").rows[0]
            // The user id is stored as the pipeline stores it: its keyed pseudonym (PUT is masked like the pipeline).
            #expect(stored[0] == "corrected" && stored[2] == #"{"fixed": true}"# && stored[3] == nil && stored[4] == job, "\(stored)")
            #expect(stored[1]?.hasPrefix("u_") == true && stored[1] != "u-42", "\(stored)")
            for (body, code) in [
                (#"{"job_id": "00000000-0000-4000-8000-000000000000"}"#, "immutable_field"),
                (#"{"event_id": "another"}"#, "immutable_field"),
                (#"{"colour": "red"}"#, "unknown_field"),
                (#"{"event_type": 42}"#, "wrong_type"),
                (#"{"event_time": "yesterday"}"#, "wrong_type"),
                (#"[1, 2]"#, "invalid_record"),
                (#"{"user_id": "#, "invalid_json"),
            ] {
                let refused = try await put(body)
                #expect(refused.status == 400 && Self.problemCode(refused) == code, "\(body): \(refused.status) \(refused.text)")
            }
            // Delete: 204, then gone.
            #expect(try await HTTP.request("DELETE", fixture.url("gateway", path), headers: ["Authorization": "Bearer \(ingest)"]).status == 403)
            let deleted = try await HTTP.request("DELETE", fixture.url("gateway", path), headers: ["Authorization": "Bearer \(admin)"])
            #expect(deleted.status == 204)
            #expect(try await Self.get(fixture, path, token: analyst).status == 404)
            #expect(try await HTTP.request("DELETE", fixture.url("gateway", path), headers: ["Authorization": "Bearer \(admin)"]).status == 404)

            // The summary over the workload's whole range equals what SQL counts in the table.
            let bounds = try await postgres.query("""
                SELECT to_char(date_trunc('minute', min(event_time)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                       to_char((date_trunc('minute', max(event_time)) + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                FROM events WHERE job_id = \(job)::uuid
                """).rows[0]
            let (from, to) = (bounds[0]!, bounds[1]!)
            // Windows are aligned to multiples of five minutes since the epoch.
            let truth = try await postgres.query("""
                SELECT count(*)::text, count(DISTINCT user_id)::text,
                       count(DISTINCT date_bin('5 minutes', event_time, '1970-01-01T00:00:00Z'::timestamptz))::text
                FROM events WHERE event_time >= \(from)::timestamptz AND event_time < \(to)::timestamptz
                """).rows[0]
            let types = try await postgres.query("""
                SELECT coalesce(event_type, 'unknown'), count(*)::text FROM events
                WHERE event_time >= \(from)::timestamptz AND event_time < \(to)::timestamptz GROUP BY 1
                """).rows
            #expect(types.count > 3)
            // From the rollups (the refresher may or may not have caught up: counts are exact
            // either way) and from every event (exact=true).
            for exact in [false, true] {
                let summary = try await Self.get(fixture, "/api/v1/analytics/summary?from=\(from)&to=\(to)&window=5m&exact=\(exact)", token: analyst)
                #expect(summary.status == 200, "\(summary.text)")
                let answer = try JSONParser().parse(Array(summary.body))
                #expect(answer["total"]?["events"]?.intValue == Int64(truth[0]!))
                let users = answer["total"]?["unique_users"]?.intValue ?? -1, realUsers = Int64(truth[1]!)!
                if answer["unique_users_estimated"] == false {
                    #expect(users == realUsers, "exact=\(exact)")
                } else {
                    #expect(!exact)
                    #expect(abs(Double(users - realUsers)) <= Double(realUsers) * 0.05, "\(users) vs \(realUsers)")
                }
                let windows = answer["windows"]?.arrayValue ?? []
                #expect(windows.count == Int(truth[2]!))
                #expect(windows.reduce(Int64(0)) { $0 + ($1["events"]?.intValue ?? 0) } == Int64(truth[0]!))
                let byType = answer["total"]?["by_event_type"]?.objectValue ?? [:]
                #expect(types.count == byType.count)
                for row in types { #expect(byType[row[0]!]?.intValue == Int64(row[1]!), "\(row[0]!)") }
                for window in windows {
                    let types = window["by_event_type"]?.objectValue ?? [:]
                    #expect(types.reduce(Int64(0)) { $0 + ($1.value.intValue ?? 0) } == window["events"]?.intValue)
                    #expect(window["start"]?.stringValue.map { $0.hasSuffix(":00Z") && Int($0.dropLast(4).suffix(2))! % 5 == 0 } == true)
                }
            }
            for (query, code) in [("window=2m", "invalid_parameter"), ("from=tomorrow", "invalid_parameter"),
                                  ("from=\(to)&to=\(from)", "invalid_parameter"), ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "range_too_large"),
                                  ("exact=maybe", "invalid_parameter"), ("from=1969-12-31T23:00:00Z&to=1970-01-01T00:30:00Z", "invalid_parameter")] {
                let refused = try await Self.get(fixture, "/api/v1/analytics/summary?\(query)", token: analyst)
                #expect(refused.status == 400 && Self.problemCode(refused) == code, "\(query): \(refused.text)")
            }
        }
    }

    @Test func anAsyncCallRunsTheFunctionAndCallsBackUntilDelivered() async throws {
        try await Self.with(db: 13) { fixture in
            // A real receiver that refuses the first delivery (500) and takes the next.
            let port = freePort()
            let received = "\(fixture.directory)/callbacks.ndjson"
            let script = """
                import http.server, sys
                count = 0
                class Handler(http.server.BaseHTTPRequestHandler):
                    def do_POST(self):
                        global count
                        body = self.rfile.read(int(self.headers['Content-Length']))
                        count += 1
                        with open(sys.argv[2], 'ab') as f:
                            f.write(body + b'\\n')
                        with open(sys.argv[2] + '.signatures', 'a') as f:
                            f.write(self.headers.get('Sluice-Signature', '') + '\\n')
                        with open(sys.argv[2] + '.traceparents', 'a') as f:
                            f.write(self.headers.get('traceparent', '') + '\\n')
                        self.send_response(500 if count == 1 else 200)
                        self.send_header('Content-Length', '0')
                        self.end_headers()
                    def log_message(self, *args):
                        pass
                http.server.HTTPServer.disable_nagle_algorithm = True
                http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
                """
            let receiver = try Child("/usr/bin/python3", ["-c", script, "\(port)", received], environment: [:],
                                     stdout: "\(fixture.directory)/receiver.log", stderr: "\(fixture.directory)/receiver.log")
            defer { kill(receiver.pid, SIGKILL); _ = receiver.poll() }
            try await Task.sleep(for: .milliseconds(500))

            let token = try await Self.cliToken(fixture, subject: "async-user", roles: "ingest")
            let now = ISO8601DateFormatter().string(from: Date())
            let events = """
                [{"metadata":{"event_id":"async-1","timestamp":"\(now)","version":"1","source":"e2e"},"user":{"id":"u1"},"payload":{"event_type":"click"}},
                 {"metadata":{"event_id":"async-2","timestamp":"\(now)"},"user":{"id":"u2"},"payload":{}},
                 {"metadata":{"event_id":"async-3","timestamp":"2020-01-01T00:00:00Z","version":"1","source":"e2e"},"user":{"id":"u3"},"payload":{"event_type":"click"}}]
                """
            // A callback to an internal address (not allowed by SLUICE_CALLBACK_ALLOW_HOSTS) is refused.
            let inside = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/validate/async"), body: Data(events.utf8), headers: [
                "Authorization": "Bearer \(token)", "Content-Type": "application/json", "X-Callback-Url": "http://10.0.0.1:\(port)/hook",
            ])
            #expect(inside.status == 400)
            #expect(Self.problemCode(inside) == "invalid_callback_url")
            let trace = "a3ce929d0e0e47364bf92f3577b34da6"
            let queued = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/validate/async"), body: Data(events.utf8), headers: [
                "Authorization": "Bearer \(token)", "Content-Type": "application/json", "X-Callback-Url": "http://127.0.0.1:\(port)/hook",
                "traceparent": "00-\(trace)-00f067aa0ba902b7-01",
            ])
            #expect(queued.status == 202, "\(queued.text)")
            let id = try #require(try JSONParser().parse(Array(queued.body))["call_id"]?.stringValue)
            #expect(queued.headers["location"] == "/api/v1/calls/\(id)")

            var call: JSONValue = .null
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                call = try JSONParser().parse(Array(try await Self.get(fixture, "/api/v1/calls/\(id)", token: token).body))
                if call["callback"]?["status"]?.stringValue == "delivered" { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(call["status"]?.stringValue == "succeeded", "\(call)")
            #expect(call["callback"]?["status"]?.stringValue == "delivered")
            #expect(call["callback"]?["attempts"]?.intValue == 2)
            let outcomes = call["outcomes"]?.arrayValue ?? []
            #expect(outcomes.map { $0["outcome"]?.stringValue ?? "" } == ["forward", "quarantine", "drop"])
            #expect(outcomes[1]["reason"]?.stringValue == "missing_field")
            #expect(outcomes[2]["reason"]?.stringValue == "stale")
            // The receiver got the refused attempt and the delivered one, the same body both times.
            let lines = try String(contentsOfFile: received, encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 2)
            let delivered = try JSONParser().parse(Array(lines.last!.utf8))
            #expect(delivered["call_id"]?.stringValue == id)
            #expect(delivered["status"]?.stringValue == "succeeded")
            #expect(delivered["outcomes"] == call["outcomes"])
            #expect(lines.first == lines.last)
            // Signed with SLUICE_WEBHOOK_SECRET, like notify's webhooks.
            let signatures = try String(contentsOfFile: "\(received).signatures", encoding: .utf8).split(separator: "\n")
            #expect(signatures.count == 2)
            #expect(WebhookSignature.verify(header: String(signatures.last ?? ""), body: Array(lines.last!.utf8),
                                            secret: Array(PipelineFixture.webhookSecret.utf8), now: Int64(Date().timeIntervalSince1970)))
            // Each attempt continues the caller's trace with a span of its own.
            let traceparents = try String(contentsOfFile: "\(received).traceparents", encoding: .utf8).split(separator: "\n").map(String.init)
            #expect(traceparents.count == 2)
            #expect(traceparents.allSatisfy { TraceContext.traceID(fromTraceparent: $0) == trace }, "\(traceparents)")
            #expect(Set(traceparents).count == 2)

            // Nothing is queued for what cannot run.
            for (name, code, status) in [("no-such-function", "function_not_found", 404), ("gateway", "function_not_found", 404)] {
                let refused = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/\(name)/async"), body: Data("[]".utf8),
                                                     headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"])
                #expect(refused.status == status && Self.problemCode(refused) == code, "\(name): \(refused.text)")
            }
            let badCallback = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/validate/async"), body: Data("[]".utf8), headers: [
                "Authorization": "Bearer \(token)", "Content-Type": "application/json", "X-Callback-Url": "ftp://example.com/x",
            ])
            #expect(badCallback.status == 400 && Self.problemCode(badCallback) == "invalid_callback_url")
            #expect(try await Self.get(fixture, "/api/v1/calls/00000000-0000-4000-8000-000000000000", token: token).status == 404)
        }
    }

    /// The Python tools `make test` installs (scripts/python-tools.sh).
    static func pythonTool(_ name: String) throws -> String {
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw TestSetupError("SLUICE_PYTHON is not set: run the suite with `make test` (scripts/python-tools.sh installs \(name))")
        }
        return URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent(name).path
    }

    @Test func theOpenAPIDocumentValidatesAndSchemathesisFindsNoFault() async throws {
        try await Self.with(db: 13, gateway: [("ingest:  {per_second: 100, burst: 200}", "ingest:  {per_second: 100000, burst: 100000}")]) { fixture in
            try await fixture.startPipeline(except: ["ingest"])
            // Records for the data routes to find.
            try await fixture.clients.postgres.query("""
                INSERT INTO events (event_id, event_type, event_time, user_id, properties, received_at)
                SELECT 'fuzz-' || i, 'view', now() - make_interval(mins => i), 'user-' || (i % 7), '{"n": 1}'::jsonb, now()
                FROM generate_series(1, 50) AS i
                """)
            // Public: no token needed.
            let answer = try await HTTP.request("GET", fixture.url("gateway", "/api/v1/openapi.json"))
            #expect(answer.status == 200)
            #expect(answer.headers["content-type"] == "application/json")
            let document = try JSONParser().parse(Array(answer.body))
            // Every route of the gateway's manifest is in it, with its roles and the bearer scheme.
            #expect(document["openapi"]?.stringValue == "3.0.3")
            for route in Self.matrix {
                let operation = document["paths"]?[route.path]?[route.method.lowercased()]
                #expect(operation?["security"] == [["bearer": []]], "\(route.method) \(route.path)")
                #expect(operation?["x-roles"].map { Set(($0.arrayValue ?? []).compactMap(\.stringValue)) } == route.roles)
                #expect(operation?["responses"]?["401"] != nil && operation?["responses"]?["403"] != nil && operation?["responses"]?["429"] != nil)
            }
            #expect(document["paths"]?["/api/v1/openapi.json"]?["get"]?["security"] == [])
            #expect(document["components"]?["securitySchemes"]?["bearer"]?["scheme"]?.stringValue == "bearer")
            #expect(document["components"]?["schemas"]?["Problem"] != nil)

            let path = "\(fixture.directory)/openapi.json"
            try answer.body.write(to: URL(fileURLWithPath: path))
            let validated = try await runCommand(try Self.pythonTool("openapi-spec-validator"), [path], timeout: .seconds(120))
            #expect(validated.status == 0, "openapi-spec-validator: \(validated.output) \(validated.error)")

            let token = try Self.hs256(Self.claims(subject: "schemathesis", roles: ["ingest", "analyst", "admin"]))
            let run = try await runCommand(try Self.pythonTool("schemathesis"), [
                "run", fixture.url("gateway", "/api/v1/openapi.json"),
                "--url", fixture.url("gateway", ""),
                "-H", "Authorization: Bearer \(token)",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
                "--max-examples", "40", "--seed", "20261123", "--request-timeout", "20", "--workers", "1",
                "--phases", "examples,coverage,fuzzing",
            ], environment: ["NO_COLOR": "1"], timeout: .seconds(600))
            #expect(run.status == 0, "schemathesis:\n\(run.output.suffix(6000))\n\(run.error.suffix(2000))")
            for (name, process) in fixture.processes {
                #expect(process.isRunning, "\(name) died during the run (status \(process.child.poll().map(String.init) ?? "?")):\n\(process.tail())")
            }
        }
    }

    @Test func a100MBUploadPassesTheGatewayWithFlatMemory() async throws {
        try await Self.with(db: 13) { fixture in
            let path = "\(fixture.directory)/big.ndjson"
            let script = """
                import json, sys
                n, size = 0, 0
                with open(sys.argv[1], 'w') as f:
                    while size < 100 * 1024 * 1024:
                        line = json.dumps({"metadata": {"event_id": "big-%d" % n, "timestamp": "2026-01-01T00:00:00Z"},
                                           "payload": {"event_type": "view", "properties": {"pad": "x" * 300}}}) + "\\n"
                        f.write(line); size += len(line); n += 1
                print(n)
                """
            let made = try await runCommand("/usr/bin/python3", ["-c", script, path])
            let count = try #require(Int(made.output.trimmingCharacters(in: .whitespacesAndNewlines)))
            let gateway = fixture.processes["gateway"]!
            let before = peakResidentKB(gateway.pid)
            let token = try await Self.cliToken(fixture, subject: "big-user", roles: "ingest")
            let result = try await runCommand("/usr/bin/curl", [
                "-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/x-ndjson",
                "--data-binary", "@\(path)", fixture.url("gateway", "/api/v1/ingest"),
            ], timeout: .seconds(300))
            #expect(result.output.hasSuffix("\n202"), "\(result.output.suffix(300)) \(result.error)")
            let body = try JSONParser().parse(Array(result.output.split(separator: "\n").first.map(String.init)?.utf8 ?? "".utf8))
            #expect(body["received"]?.intValue == Int64(count))
            let after = peakResidentKB(gateway.pid)
            // 100 MB passed through; the gateway's peak resident memory grew by far less.
            #expect(after - before < 40_000, "gateway VmHWM \(before) kB → \(after) kB")
            #expect(after < 150_000, "gateway VmHWM \(after) kB")
            try await fixture.clients.redis.send(["FLUSHDB"])
        }
    }
}

/// A process's peak resident set (VmHWM), in kB.
func peakResidentKB(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return -1 }
    return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
}
