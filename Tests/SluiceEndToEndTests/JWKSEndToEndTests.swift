import Foundation
import Sluice
import SluiceHTTP
import Testing

/// The gateway as its own process, checking tokens against a real OpenID provider's key set
/// (Tests/tools/jwks_provider.py: Python's http.server, keys and tokens made by the
/// `cryptography` package), with ingest behind it; the provider rotates its keys mid-run.
@Suite("JWKS end to end", .serialized)
struct JWKSEndToEndTests {
    static let audience = "sluice-jwks-e2e"
    static let db = 21

    /// A running provider: its issuer URL, control calls and request counts.
    struct Provider {
        let port: Int
        let child: Child
        var issuer: String { "http://127.0.0.1:\(port)" }

        static func start(directory: String) async throws -> Provider {
            guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
                throw TestSetupError("SLUICE_PYTHON is not set: run the suite with scripts/test.sh (scripts/python-tools.sh installs cryptography)")
            }
            let root = try TestEnvironment.get().packageRoot
            let port = freePort()
            let child = try Child(python, ["\(root)/Tests/tools/jwks_provider.py", String(port)], environment: [:],
                                  stdout: "\(directory)/provider.out", stderr: "\(directory)/provider.err")
            do {
                try await waitForListener(port, timeout: .seconds(60))
            } catch {
                kill(child.pid, SIGKILL)
                _ = child.poll()
                let log = (try? String(contentsOfFile: "\(directory)/provider.err", encoding: .utf8)) ?? ""
                throw TestSetupError("the JWKS provider did not start: \(log)")
            }
            return Provider(port: port, child: child)
        }

        func stop() {
            kill(child.pid, SIGKILL)
            _ = child.poll()
        }

        @discardableResult
        func control(_ path: String, _ body: JSONValue) async throws -> JSONValue {
            let response = try await HTTP.request("POST", "\(issuer)\(path)", body: Data(body.serializedBytes), headers: ["Content-Type": "application/json"])
            guard response.status == 200 else { throw TestSetupError("provider \(path): \(response.status) \(response.text)") }
            return try JSONParser().parse(Array(response.body))
        }

        /// Requests for the key set so far (`jwks`), for the discovery document
        /// (`discovery`), or either answered with a failure (`failed`).
        func fetches(_ kind: String = "jwks") async throws -> Int {
            let response = try await HTTP.request("GET", "\(issuer)/control/count")
            return Int(try JSONParser().parse(Array(response.body))[kind]?.intValue ?? -1)
        }

        func publish(_ kids: [String]) async throws { try await control("/control/publish", ["kids": .array(kids.map { .string($0) })]) }

        func fail(_ status: Int) async throws { try await control("/control/fail", ["status": .int(Int64(status))]) }

        /// `count` tokens signed by `key` with `alg`; the header's kid is `kid` (the key's by
        /// default; `.null` leaves it out).
        func mint(key: String, alg: String = "RS256", kid: JSONValue? = nil, subject: String = "jwks-user",
                  claims extra: JSONObject = [:], count: Int = 1) async throws -> [String] {
            let now = Int64(Date().timeIntervalSince1970)
            var claims: JSONObject = ["sub": .string(subject), "roles": ["ingest"], "iss": .string(issuer), "aud": .string(JWKSEndToEndTests.audience),
                                      "iat": .int(now), "exp": .int(now + 600)]
            for (name, value) in extra { claims[name] = value }
            var request: JSONObject = ["key": .string(key), "alg": .string(alg), "claims": .object(claims), "count": .int(Int64(count))]
            if let kid { request["kid"] = kid }
            let answer = try await control("/control/mint", .object(request))
            return (answer["tokens"]?.arrayValue ?? []).compactMap(\.stringValue)
        }

        func token(key: String, alg: String = "RS256", kid: JSONValue? = nil, subject: String = "jwks-user", claims: JSONObject = [:]) async throws -> String {
            guard let token = try await mint(key: key, alg: alg, kid: kid, subject: subject, claims: claims).first else {
                throw TestSetupError("the provider minted no token")
            }
            return token
        }
    }

    /// Starts the provider, ingest and a gateway whose keys come from the provider
    /// (`environment` says how), and runs `body`.
    static func with(failing: Bool = false, gateway environment: @escaping (Provider) -> [String: String],
                     _ body: (PipelineFixture, Provider) async throws -> Void) async throws {
        var manifests = try PipelineFixture.pipelineManifests()
        let root = try TestEnvironment.get().packageRoot
        manifests["gateway"] = try String(contentsOfFile: "\(root)/functions/gateway/function.yaml", encoding: .utf8)
        try await PipelineFixture.with(db: db, manifests: manifests) { fixture in
            let provider = try await Provider.start(directory: fixture.directory)
            defer { provider.stop() }
            if failing { try await provider.fail(500) }
            try await fixture.start("ingest")
            try await fixture.start("gateway", environment: [
                "SLUICE_JWT_AUDIENCE": audience, "SLUICE_UPSTREAM_INGEST": fixture.url("ingest", ""),
            ].merging(environment(provider)) { $1 })
            try await body(fixture, provider)
        }
    }

    static func jobs(_ fixture: PipelineFixture, token: String) async throws -> HTTP.Response {
        try await HTTP.request("GET", fixture.url("gateway", "/api/v1/jobs"), headers: ["Authorization": "Bearer \(token)"])
    }

    static func problemCode(_ response: HTTP.Response) -> String? {
        guard response.headers["content-type"] == "application/problem+json" else { return nil }
        return (try? JSONParser().parse(Array(response.body)))?["code"]?.stringValue
    }

    /// Answers of `tokens`, sent all at once.
    static func burst(_ fixture: PipelineFixture, _ tokens: [String]) async throws -> [HTTP.Response] {
        try await withThrowingTaskGroup(of: HTTP.Response.self) { group in
            for token in tokens { group.addTask { try await jobs(fixture, token: token) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    static func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestSetupError("not within \(timeout): \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func aKeyRotationAtTheProviderIsFollowedWithoutARestart() async throws {
        try await Self.with(gateway: { ["SLUICE_JWT_JWKS_URL": "\($0.issuer)/jwks.json", "SLUICE_JWT_ISSUER": $0.issuer] }) { fixture, provider in
            let gateway = fixture.processes["gateway"]!
            // The gateway fetched the set once as it started, and not again for the tokens below.
            try await Self.waitUntil("the gateway's first fetch") { try await provider.fetches() >= 1 }
            let tokenA = try await provider.token(key: "rsa-a")
            let tokenC = try await provider.token(key: "ec-c", alg: "ES256")
            for token in [tokenA, tokenC] {
                let answer = try await Self.jobs(fixture, token: token)
                #expect(answer.status == 200, "\(answer.text)")
                #expect((try? JSONParser().parse(Array(answer.body)))?["jobs"] != nil, "\(answer.text)")
            }

            // Refused without asking the provider again: another algorithm than the key's,
            // HS256, none, a kid-less token when the set has several keys, a wrong signature.
            let hs256 = try JWTSigner.sign(claims: ["sub": "jwks-user", "roles": ["ingest"], "iss": .string(provider.issuer), "aud": .string(Self.audience),
                                                    "exp": .int(Int64(Date().timeIntervalSince1970) + 600)],
                                           algorithm: .hs256, key: Array("an hmac key a verifier must ignore".utf8), keyID: "hmac-f")
            let noneToken = Base64URL.encode(Array(#"{"alg":"none","kid":"rsa-a"}"#.utf8)) + "." + tokenA.split(separator: ".")[1] + ".c2ln"
            let refused: [(String, String)] = [
                ("HS256 under the set's HMAC kid", hs256),
                ("alg none", noneToken),
                ("RS256 under an EC kid", try await provider.token(key: "rsa-a", kid: "ec-c")),
                ("ES256 under an RSA kid", try await provider.token(key: "ec-c", alg: "ES256", kid: "rsa-a")),
                ("no kid, several keys", try await provider.token(key: "rsa-a", kid: .null)),
                ("rsa-b's signature under kid rsa-a", try await provider.token(key: "rsa-b", kid: "rsa-a")),
                ("another audience", try await provider.token(key: "rsa-a", claims: ["aud": "another-client"])),
            ]
            for (name, token) in refused {
                let answer = try await Self.jobs(fixture, token: token)
                #expect(answer.status == 401 && Self.problemCode(answer) == "invalid_token", "\(name): \(answer.status) \(answer.text)")
            }
            #expect(try await provider.fetches() == 1)

            // The provider rotates: rsa-b published, rsa-a withdrawn. Fifty different rsa-b
            // tokens at once: all pass, after one fetch between them.
            try await provider.publish(["rsa-b", "ec-c", "enc-e"])
            let tokensB = try await provider.mint(key: "rsa-b", count: 50)
            let answersB = try await Self.burst(fixture, tokensB)
            let refreshed = ContinuousClock.now
            #expect(answersB.count == 50 && answersB.allSatisfy { $0.status == 200 }, "\(answersB.map(\.status))")
            #expect(try await provider.fetches() == 2)

            // rsa-a's token, which passed (and was cached) before, and one minted now: refused.
            for token in [tokenA, try await provider.token(key: "rsa-a")] {
                let answer = try await Self.jobs(fixture, token: token)
                #expect(answer.status == 401 && Self.problemCode(answer) == "invalid_token", "\(answer.status) \(answer.text)")
                #expect(answer.headers["www-authenticate"]?.contains(#"error="invalid_token""#) == true)
            }
            // Unknown kids (the withdrawn one, an encryption key's, made-up ones), 50 at once:
            // refused, and the provider asked at most once more (not at all within 30 s of the
            // last fetch on demand).
            let unknown = [try await provider.token(key: "rsa-a"), try await provider.token(key: "enc-e")]
                + (try await provider.mint(key: "rsa-b", kid: "no-such-kid", count: 48))
            let answersUnknown = try await Self.burst(fixture, unknown)
            let elapsed = ContinuousClock.now - refreshed
            #expect(answersUnknown.count == 50 && answersUnknown.allSatisfy { $0.status == 401 && Self.problemCode($0) == "invalid_token" },
                    "\(answersUnknown.map(\.status))")
            let fetches = try await provider.fetches()
            if elapsed < .seconds(29) {
                #expect(fetches == 2, "the burst came \(elapsed) after the last fetch")
            } else {
                #expect(fetches <= 3, "the burst came \(elapsed) after the last fetch")
            }

            // The keys that stayed still pass; nothing was restarted.
            for token in [tokensB[0], tokenC, try await provider.token(key: "ec-c", alg: "ES256")] {
                #expect(try await Self.jobs(fixture, token: token).status == 200)
            }
            #expect(gateway.isRunning)
            // The log names the key sets it loaded, and holds no token.
            let log = gateway.log
            #expect(log.contains("JWT key set loaded"))
            #expect(log.contains("rsa-b") && log.contains("enc-e: use is not sig") && log.contains("hmac-f: alg HS256 is not RS256 or ES256"), "\(gateway.tail())")
            for token in [tokenA, tokensB[0], tokenC] {
                #expect(!log.contains(String(token.split(separator: ".")[2])))
            }
        }
    }

    @Test func discoveryTheScheduleAndAProviderOutage() async throws {
        // The provider fails from the start.
        try await Self.with(failing: true, gateway: { provider in
            ["SLUICE_JWT_ISSUER": provider.issuer, "SLUICE_JWT_DISCOVERY": "on", "SLUICE_JWT_JWKS_REFRESH": "1s"]
        }) { fixture, provider in
            let gateway = fixture.processes["gateway"]!
            // No set yet, so a token cannot be checked: 503 with Retry-After, not 401.
            try await Self.waitUntil("a failed discovery") { try await provider.fetches("discovery") >= 1 }
            let tokenA = try await provider.token(key: "rsa-a")
            let answer = try await Self.jobs(fixture, token: tokenA)
            #expect(answer.status == 503 && Self.problemCode(answer) == "token_keys_unavailable", "\(answer.status) \(answer.text)")
            #expect(answer.headers["retry-after"] == "5")
            #expect(try await provider.fetches() == 0)  // discovery failed, so the key set was never asked for

            // The provider recovers: the gateway's retries bring the set without a restart.
            try await provider.fail(0)
            try await Self.waitUntil("token A accepted") { try await Self.jobs(fixture, token: tokenA).status == 200 }
            #expect(try await provider.fetches() >= 1)

            // An outage: the last set is kept, for cached and new tokens alike.
            try await provider.fail(500)
            let failed = try await provider.fetches("failed")
            try await Self.waitUntil("two more failed fetches") { try await provider.fetches("failed") >= failed + 2 }
            #expect(try await Self.jobs(fixture, token: tokenA).status == 200)
            #expect(try await Self.jobs(fixture, token: try await provider.token(key: "rsa-a")).status == 200)
            #expect(gateway.log.contains("could not fetch the JWT key set; keeping the last one"), "\(gateway.tail())")
            #expect(gateway.log.contains("HTTP 500"))

            // rsa-a withdrawn, and no token of another kid asks for a refresh: the schedule
            // alone ends token A, cached as it is.
            try await provider.publish(["rsa-b", "ec-c"])
            try await provider.fail(0)
            try await Self.waitUntil("token A refused") { try await Self.jobs(fixture, token: tokenA).status == 401 }
            #expect(try await Self.jobs(fixture, token: try await provider.token(key: "rsa-b")).status == 200)
            #expect(try await Self.jobs(fixture, token: try await provider.token(key: "ec-c", alg: "ES256")).status == 200)
            #expect(gateway.isRunning)
        }
    }
}
