import Foundation
import Logging
import Sluice
import SluiceHTTP
import Synchronization
import Testing

/// Key sets served from a table; counts the requests per URL.
final class TableFetcher: JWKSFetching {
    private struct State {
        var documents: [String: Result<JWKSDocument, JWKSFetchError>] = [:]
        var counts: [String: Int] = [:]
        var delay: Duration?
    }

    private let state = Mutex(State())

    func serve(_ url: String, _ body: [UInt8], maxAge: Duration? = nil) {
        state.withLock { $0.documents[url] = .success(JWKSDocument(body: body, maxAge: maxAge)) }
    }

    func fail(_ url: String, _ reason: String = "HTTP 500") {
        state.withLock { $0.documents[url] = .failure(JWKSFetchError(reason)) }
    }

    /// Each fetch waits this long before it answers (so that callers overlap).
    func slow(_ delay: Duration?) { state.withLock { $0.delay = delay } }

    func count(_ url: String) -> Int { state.withLock { $0.counts[url, default: 0] } }

    func fetch(_ url: String) async throws(JWKSFetchError) -> JWKSDocument {
        let (result, delay) = state.withLock { state in
            state.counts[url, default: 0] += 1
            return (state.documents[url] ?? .failure(JWKSFetchError("HTTP 404")), state.delay)
        }
        if let delay { try? await Task.sleep(for: delay) }
        return try result.get()
    }

    func shutdown() async {}
}

/// A monotonic clock the test moves.
final class SteppedClock: Sendable {
    private let start = ContinuousClock.now
    private let offset = Mutex<Duration>(.zero)

    var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
    func advance(_ duration: Duration) { offset.withLock { $0 += duration } }
}

@Suite("JWKS: keys from an OpenID Connect provider")
struct JWKSTests {
    static let issuer = "https://id.example"
    static let audience = "sluice"
    static let jwksURL = "https://id.example/jwks"
    let now = Date().timeIntervalSince1970.rounded()

    /// The RSA public key of `pair` as a JWK.
    static func rsaJWK(_ pair: TestKeys.Pair, kid: String?, _ extra: JSONObject = [:]) -> JSONValue {
        let output = String(decoding: TestKeys.openssl(["rsa", "-pubin", "-modulus", "-noout"], input: pair.publicPEM), as: UTF8.self)
        let hex = output.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "Modulus=", with: "")
        var modulus: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            modulus.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        var object: JSONObject = ["kty": "RSA", "n": .string(Base64URL.encode(modulus)), "e": "AQAB"]
        if let kid { object["kid"] = .string(kid) }
        for (key, value) in extra { object[key] = value }
        return .object(object)
    }

    /// The P-256 public key of `pair` as a JWK.
    static func ecJWK(_ pair: TestKeys.Pair, kid: String?, _ extra: JSONObject = [:]) -> JSONValue {
        let der = TestKeys.openssl(["pkey", "-pubin", "-outform", "DER"], input: pair.publicPEM)
        let point = Array(der.suffix(64))  // the uncompressed point 04‖x‖y ends the SubjectPublicKeyInfo
        var object: JSONObject = ["kty": "EC", "crv": "P-256", "x": .string(Base64URL.encode(point.prefix(32))), "y": .string(Base64URL.encode(point.suffix(32)))]
        if let kid { object["kid"] = .string(kid) }
        for (key, value) in extra { object[key] = value }
        return .object(object)
    }

    static func document(_ entries: [JSONValue]) -> [UInt8] { JSONValue.object(["keys": .array(entries)]).serializedBytes }

    static let keyA = rsaJWK(TestKeys.rsa, kid: "a", ["use": "sig", "alg": "RS256"])
    static let keyB = rsaJWK(TestKeys.rsaOther, kid: "b")
    static let keyC = ecJWK(TestKeys.ec, kid: "c", ["use": "sig", "alg": "ES256"])

    func claims(_ extra: JSONObject = [:]) -> JSONObject {
        var claims: JSONObject = [
            "sub": "user-1", "roles": ["ingest"], "iss": .string(Self.issuer), "aud": .string(Self.audience),
            "iat": .int(Int64(now)), "exp": .int(Int64(now) + 600), "jti": .string(UUID().uuidString),
        ]
        for (key, value) in extra { claims[key] = value }
        return claims
    }

    func rs256(_ pair: TestKeys.Pair = TestKeys.rsa, kid: String?, _ extra: JSONObject = [:]) throws -> String {
        try JWTSigner.sign(claims: claims(extra), algorithm: .rs256, key: pair.privatePEM, keyID: kid)
    }

    func es256(_ pair: TestKeys.Pair = TestKeys.ec, kid: String?) throws -> String {
        try JWTSigner.sign(claims: claims(), algorithm: .es256, key: pair.privatePEM, keyID: kid)
    }

    func forge(header: JSONObject, claims: JSONObject, signature: String) -> String {
        Base64URL.encode(JSONValue.object(header).serializedBytes) + "." + Base64URL.encode(JSONValue.object(claims).serializedBytes) + "." + signature
    }

    /// A verifier on a key set served by `fetcher` at `location`, with the test's clock.
    func verifier(_ fetcher: TableFetcher, clock: SteppedClock, location: JWKSCache.Configuration.Location = .keySet(JWKSTests.jwksURL))
        -> (JWTVerifier, JWKSCache) {
        let configuration = JWKSCache.Configuration(location: location)
        let keySet = JWKSCache(configuration, fetcher: fetcher, logger: Logger(label: "test"), clock: { clock.now })
        let verifier = JWTVerifier(.init(keys: .keySet(configuration), issuer: Self.issuer, audience: Self.audience, leeway: 30), keySet: keySet)
        return (verifier, keySet)
    }

    func failure(_ verifier: JWTVerifier, _ token: String) async -> JWTFailure? {
        do {
            _ = try await verifier.verify(authorization: "Bearer \(token)")
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Parsing (pure)

    @Test func entriesAreTakenOrIgnoredWithTheReason() throws {
        let small = TestKeys.generate(name: "rsa-1024", arguments: ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"])
        let c = Self.ecJWK(TestKeys.ec, kid: "c")
        let x = c["x"]!.stringValue!, y = c["y"]!.stringValue!
        let entries: [JSONValue] = [
            Self.keyA,
            Self.rsaJWK(TestKeys.rsaOther, kid: "enc", ["use": "enc"]),
            Self.rsaJWK(TestKeys.rsaOther, kid: "rs384", ["alg": "RS384"]),
            Self.rsaJWK(TestKeys.rsaOther, kid: "ops", ["key_ops": ["encrypt"]]),
            Self.rsaJWK(TestKeys.rsaOther, kid: "mixed", ["alg": "ES256"]),
            Self.rsaJWK(small, kid: "small"),
            ["kty": "RSA", "kid": "bad-n", "n": "not base64url!", "e": "AQAB"],
            ["kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"],
            ["kty": "oct", "kid": "oct", "k": "c2VjcmV0"],
            ["kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"],
            ["kty": "EC", "kid": "p384", "crv": "P-384", "x": .string(x), "y": .string(y)],
            ["kty": "EC", "kid": "short", "crv": "P-256", "x": .string(String(x.dropLast(4))), "y": .string(y)],
            ["kty": "EC", "kid": "off-curve", "crv": "P-256", "x": .string(x), "y": .string(x)],
            ["kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"],
            "not an object",
            Self.keyC,
        ]
        let set = try JWKSet(document: Self.document(entries))
        #expect(set.keys.map(\.keyID) == ["a", "c"])
        #expect(set.keys.map(\.algorithm) == [.rs256, .es256])
        #expect(set.ignored.map(\.description) == [
            "kid enc: use is not sig",
            "kid rs384: alg RS384 is not RS256 or ES256",
            "kid ops: key_ops has no verify",
            "kid mixed: alg ES256 on an RSA key",
            "kid small: an RSA key of 1024 bits (2048 to 8192 are taken)",
            "kid bad-n: n is missing or not base64url",
            "kid hmac: alg HS256 is not RS256 or ES256",
            "kid oct: kty oct is not RSA or EC",
            "kid ed: kty OKP is not RSA or EC",
            "kid p384: crv P-384 is not P-256",
            "kid short: x/y are not 32 bytes each",
            "kid off-curve: x/y are not a point on P-256",
            "a key without kid: kid is not a string",
            "a key without kid: not a JSON object",
        ])
    }

    @Test func aDocumentThatIsNoKeySetIsRefused() {
        for text in ["not json", "[]", #"{"keys": 1}"#, #"{"key": []}"#] {
            #expect(throws: JWKSet.ParseError.self, "\(text)") { try JWKSet(document: Array(text.utf8)) }
        }
        #expect((try? JWKSet(document: Array(#"{"keys": []}"#.utf8)))?.keys.isEmpty == true)
    }

    @Test func aKidTwiceForOneAlgorithmIsDroppedAndForTwoAlgorithmsIsKept() throws {
        let set = try JWKSet(document: Self.document([
            Self.rsaJWK(TestKeys.rsa, kid: "x"), Self.rsaJWK(TestKeys.rsaOther, kid: "x"),
            Self.rsaJWK(TestKeys.rsa, kid: "y"), Self.ecJWK(TestKeys.ec, kid: "y"),
        ]))
        #expect(set.keys.map(\.keyID) == ["y", "y"])
        #expect(set.ignored.map(\.description) == ["kid x: another RS256 key has the same kid", "kid x: another RS256 key has the same kid"])
        guard case .key(let rsa) = set.key(id: "y", algorithm: .rs256), case .key(let ec) = set.key(id: "y", algorithm: .es256) else {
            Issue.record("kid y was not found for both algorithms")
            return
        }
        #expect(rsa.algorithm == .rs256 && ec.algorithm == .es256)
        guard case .unknownKeyID = set.key(id: "x", algorithm: .rs256) else { Issue.record("kid x was taken"); return }
    }

    @Test func theKeyIsChosenByKidAndAlgorithm() throws {
        let set = try JWKSet(document: Self.document([Self.keyA, Self.keyC]))
        func describe(_ selection: JWKSet.Selection) -> String {
            switch selection {
            case .key(let key): "key \(key.keyID ?? "-") \(key.algorithm.rawValue)"
            case .unknownKeyID: "unknown"
            case .keyIDRequired: "kid required"
            case .wrongAlgorithm: "wrong algorithm"
            }
        }
        #expect(describe(set.key(id: "a", algorithm: .rs256)) == "key a RS256")
        #expect(describe(set.key(id: "c", algorithm: .es256)) == "key c ES256")
        #expect(describe(set.key(id: "c", algorithm: .rs256)) == "wrong algorithm")
        #expect(describe(set.key(id: "a", algorithm: .es256)) == "wrong algorithm")
        #expect(describe(set.key(id: "z", algorithm: .rs256)) == "unknown")
        #expect(describe(set.key(id: nil, algorithm: .rs256)) == "kid required")
        // One key: a token without kid gets it, if the algorithm is the key's.
        let one = try JWKSet(document: Self.document([Self.keyA]))
        #expect(describe(one.key(id: nil, algorithm: .rs256)) == "key a RS256")
        #expect(describe(one.key(id: nil, algorithm: .es256)) == "wrong algorithm")
        #expect(describe(one.key(id: "b", algorithm: .rs256)) == "unknown")
        let unnamed = try JWKSet(document: Self.document([Self.rsaJWK(TestKeys.rsa, kid: nil)]))
        #expect(describe(unnamed.key(id: nil, algorithm: .rs256)) == "key - RS256")
        #expect(describe(unnamed.key(id: "a", algorithm: .rs256)) == "unknown")
        let empty = try JWKSet(document: Self.document([]))
        #expect(describe(empty.key(id: nil, algorithm: .rs256)) == "unknown")
    }

    @Test func signaturesAreCheckedWithTheJWK() throws {
        let set = try JWKSet(document: Self.document([Self.keyA, Self.keyC]))
        let a = set.keys[0], c = set.keys[1]
        func parts(_ token: String) -> (input: [UInt8], signature: [UInt8]) {
            let dot = token.lastIndex(of: ".")!
            return (Array(token[..<dot].utf8), Base64URL.decode(token[token.index(after: dot)...].utf8)!)
        }
        let rs = parts(try rs256(kid: "a")), es = parts(try es256(kid: "c"))
        #expect(a.isValidSignature(rs.signature, for: rs.input))
        #expect(c.isValidSignature(es.signature, for: es.input))
        #expect(!a.isValidSignature(rs.signature, for: rs.input + [0x20]))
        #expect(!c.isValidSignature(es.signature, for: es.input + [0x20]))
        #expect(!a.isValidSignature(Array(rs.signature.dropLast()), for: rs.input))
        #expect(!c.isValidSignature(rs.signature, for: rs.input))
        #expect(!a.isValidSignature(es.signature, for: es.input))
        var flipped = es.signature
        flipped[40] ^= 1
        #expect(!c.isValidSignature(flipped, for: es.input))
        // Another RSA key's signature.
        let other = parts(try rs256(TestKeys.rsaOther, kid: "a"))
        #expect(!a.isValidSignature(other.signature, for: other.input))
        // The identity changes with the kid and with the numbers.
        let renamed = try JWKSet(document: Self.document([Self.rsaJWK(TestKeys.rsa, kid: "a2"), Self.rsaJWK(TestKeys.rsaOther, kid: "a")]))
        #expect(a.identity != renamed.keys[0].identity && a.identity != renamed.keys[1].identity)
        #expect(set.contains(a.identity) && !renamed.contains(a.identity))
        let again = try JWKSet(document: Self.document([Self.rsaJWK(TestKeys.rsa, kid: "a")]))
        #expect(again.contains(a.identity))
    }

    // MARK: - The verifier with a key set

    @Test func tokensOfThePublishedKeysPassAndEveryConfusionIsRefused() async throws {
        let fetcher = TableFetcher(), clock = SteppedClock()
        fetcher.serve(Self.jwksURL, Self.document([Self.keyA, Self.keyC]))
        let (verifier, _) = verifier(fetcher, clock: clock)
        let good = try rs256(kid: "a")
        let verified = try await verifier.verify(authorization: "Bearer \(good)")
        #expect(verified == VerifiedToken(subject: "user-1", roles: ["ingest"], expiresAt: now + 600))
        #expect(await failure(verifier, try es256(kid: "c")) == nil)
        #expect(fetcher.count(Self.jwksURL) == 1)

        let parts = good.split(separator: ".").map(String.init)
        let corpus: [(String, String, JWTFailure)] = [
            ("HS256 under an RSA kid", try JWTSigner.sign(claims: claims(), algorithm: .hs256, key: Array("a-secret-of-thirty-two-bytes-or-more".utf8), keyID: "a"), .wrongAlgorithm),
            ("HS256 keyed with the RSA public key", try JWTSigner.sign(claims: claims(), algorithm: .hs256, key: TestKeys.rsa.publicPEM, keyID: "a"), .wrongAlgorithm),
            ("alg none", forge(header: ["alg": "none", "kid": "a"], claims: claims(), signature: parts[2]), .wrongAlgorithm),
            ("alg RS512", forge(header: ["alg": "RS512", "kid": "a"], claims: claims(), signature: parts[2]), .wrongAlgorithm),
            ("RS256 under an EC kid", try rs256(kid: "c"), .wrongAlgorithm),
            ("ES256 under an RSA kid", try es256(kid: "a"), .wrongAlgorithm),
            ("another RSA key under kid a", try rs256(TestKeys.rsaOther, kid: "a"), .badSignature),
            ("another EC key under kid c", try es256(TestKeys.generate(name: "ec-other", arguments: ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]), kid: "c"), .badSignature),
            ("tampered claims", "\(parts[0]).\(Base64URL.encode(JSONValue.object(claims(["roles": ["admin"]])).serializedBytes)).\(parts[2])", .badSignature),
            ("no kid, two keys", try rs256(kid: nil), .keyIDRequired),
            ("kid not a string", forge(header: ["alg": "RS256", "kid": 1], claims: claims(), signature: parts[2]), .malformed),
            ("crit header", forge(header: ["alg": "RS256", "kid": "a", "crit": ["exp"]], claims: claims(), signature: parts[2]), .malformed),
            ("expired", try rs256(kid: "a", ["exp": .int(Int64(now) - 60)]), .expired),
            ("wrong audience", try rs256(kid: "a", ["aud": "another-client"]), .wrongAudience),
            ("wrong issuer", try rs256(kid: "a", ["iss": "https://evil.example"]), .wrongIssuer),
            ("no sub", try rs256(kid: "a", ["sub": ""]), .missingSubject),
        ]
        for (name, token, expected) in corpus {
            #expect(await failure(verifier, token) == expected, "\(name)")
        }
        // None of these asked the provider again: only an unknown kid does.
        #expect(fetcher.count(Self.jwksURL) == 1)
    }

    @Test func aRotationIsFollowedOnAnUnknownKidAtMostOncePerInterval() async throws {
        let fetcher = TableFetcher(), clock = SteppedClock()
        fetcher.serve(Self.jwksURL, Self.document([Self.keyA, Self.keyC]))
        let (verifier, keySet) = verifier(fetcher, clock: clock)
        let tokenA = try rs256(kid: "a")
        #expect(await failure(verifier, tokenA) == nil)
        #expect(fetcher.count(Self.jwksURL) == 1)  // the first token fetched the set

        // The provider rotates: B published, A withdrawn.
        fetcher.serve(Self.jwksURL, Self.document([Self.keyB, Self.keyC]))
        let tokenB = try rs256(TestKeys.rsaOther, kid: "b")
        // Within 30 s of the last fetch on demand, an unknown kid does not fetch.
        clock.advance(.seconds(29))
        #expect(await failure(verifier, tokenB) == .unknownKey)
        #expect(fetcher.count(Self.jwksURL) == 1)
        clock.advance(.seconds(1))
        #expect(await failure(verifier, tokenB) == nil)
        #expect(fetcher.count(Self.jwksURL) == 2)
        // A, verified and cached before, and a fresh A: refused, and no fetch for them.
        #expect(await failure(verifier, tokenA) == .unknownKey)
        #expect(await failure(verifier, try rs256(kid: "a")) == .unknownKey)
        #expect(fetcher.count(Self.jwksURL) == 2)
        #expect(keySet.current?.keys.map(\.keyID) == ["b", "c"])

        // A burst of unknown kids, each waiting for the provider: one fetch for all.
        clock.advance(.seconds(31))
        fetcher.slow(.milliseconds(200))
        let unknown = try (0..<50).map { try rs256(TestKeys.rsaOther, kid: "unknown-\($0)") }
        let results = await withTaskGroup(of: JWTFailure?.self) { group in
            for token in unknown { group.addTask { await self.failure(verifier, token) } }
            return await group.reduce(into: [JWTFailure?]()) { $0.append($1) }
        }
        #expect(results.count == 50 && results.allSatisfy { $0 == .unknownKey })
        #expect(fetcher.count(Self.jwksURL) == 3)
        // And again at once: none.
        for token in unknown.prefix(10) { #expect(await failure(verifier, token) == .unknownKey) }
        #expect(fetcher.count(Self.jwksURL) == 3)
        // B and C pass throughout.
        #expect(await failure(verifier, tokenB) == nil)
        #expect(await failure(verifier, try es256(kid: "c")) == nil)
    }

    @Test func aCachedTokenOfAWithdrawnOrReplacedKeyIsRefusedAfterTheScheduledRefresh() async throws {
        let fetcher = TableFetcher(), clock = SteppedClock()
        fetcher.serve(Self.jwksURL, Self.document([Self.keyA, Self.keyC]))
        let (verifier, keySet) = verifier(fetcher, clock: clock)
        let tokenA = try rs256(kid: "a"), tokenC = try es256(kid: "c")
        #expect(await failure(verifier, tokenA) == nil)
        #expect(await failure(verifier, tokenC) == nil)
        // kid a now names another key's numbers; c is withdrawn. The schedule fetches the set.
        fetcher.serve(Self.jwksURL, Self.document([Self.rsaJWK(TestKeys.rsaOther, kid: "a")]))
        #expect(await keySet.refresh(onDemand: false) == true)
        #expect(await failure(verifier, tokenA) == .badSignature)
        #expect(await failure(verifier, tokenC) == .unknownKey)
        #expect(fetcher.count(Self.jwksURL) == 2)  // the on-demand fetch for c waits 30 s from the first
    }

    @Test func beforeAnySetTokensCannotBeCheckedAndAFailedFetchKeepsTheLastSet() async throws {
        let fetcher = TableFetcher(), clock = SteppedClock()
        fetcher.fail(Self.jwksURL)
        let (verifier, keySet) = verifier(fetcher, clock: clock)
        let tokenA = try rs256(kid: "a")
        #expect(await failure(verifier, tokenA) == .keysUnavailable)
        #expect(await failure(verifier, tokenA) == .keysUnavailable)
        #expect(fetcher.count(Self.jwksURL) == 1)  // the second did not fetch again within 30 s
        #expect(keySet.current == nil)
        // The schedule's next attempt brings it.
        fetcher.serve(Self.jwksURL, Self.document([Self.keyA]))
        #expect(await keySet.refresh(onDemand: false) == true)
        #expect(await failure(verifier, tokenA) == nil)
        // The provider fails: the last set is kept, so a token never seen before still passes.
        fetcher.fail(Self.jwksURL, "no answer within 5 seconds")
        #expect(await keySet.refresh(onDemand: false) == false)
        #expect(keySet.current?.keys.map(\.keyID) == ["a"])
        #expect(await failure(verifier, try rs256(kid: "a")) == nil)
        #expect(await failure(verifier, try rs256(kid: nil)) == nil)  // one key: a token without kid gets it
        #expect(fetcher.count(Self.jwksURL) == 3)
    }

    @Test func discoveryNamesTheKeySetAndItsIssuerMustMatch() async throws {
        let discovery = "https://id.example/.well-known/openid-configuration"
        let fetcher = TableFetcher(), clock = SteppedClock()
        fetcher.serve(discovery, JSONValue.object(["issuer": .string(Self.issuer), "jwks_uri": .string(Self.jwksURL)]).serializedBytes)
        fetcher.serve(Self.jwksURL, Self.document([Self.keyA]))
        let (verifier, keySet) = verifier(fetcher, clock: clock, location: .discovery(discovery, issuer: Self.issuer))
        #expect(await failure(verifier, try rs256(kid: "a")) == nil)
        #expect(await keySet.refresh(onDemand: false) == true)
        #expect(fetcher.count(discovery) == 1 && fetcher.count(Self.jwksURL) == 2)
        // The key set fails once: the discovery document is read again on the next fetch.
        fetcher.fail(Self.jwksURL)
        #expect(await keySet.refresh(onDemand: false) == false)
        fetcher.serve(Self.jwksURL, Self.document([Self.keyA]))
        #expect(await keySet.refresh(onDemand: false) == true)
        #expect(fetcher.count(discovery) == 2 && fetcher.count(Self.jwksURL) == 4)

        for document: JSONValue in [
            ["issuer": "https://evil.example", "jwks_uri": .string(Self.jwksURL)],
            ["issuer": .string(Self.issuer), "jwks_uri": "file:///etc/passwd"],
            ["issuer": .string(Self.issuer)],
            "a string",
        ] {
            let other = TableFetcher()
            other.serve(discovery, document.serializedBytes)
            other.serve(Self.jwksURL, Self.document([Self.keyA]))
            let (refused, _) = self.verifier(other, clock: SteppedClock(), location: .discovery(discovery, issuer: Self.issuer))
            #expect(await failure(refused, try rs256(kid: "a")) == .keysUnavailable, "\(document)")
            #expect(other.count(Self.jwksURL) == 0)
        }
    }

    @Test func theScheduleHonoursMaxAgeWithinBounds() async throws {
        for (maxAge, expected): (Duration?, Duration) in [(nil, .seconds(300)), (.seconds(60), .seconds(60)), (.seconds(5), .seconds(30)),
                                                          (.seconds(0), .seconds(30)), (.seconds(86_400), .seconds(300))] {
            let fetcher = TableFetcher()
            fetcher.serve(Self.jwksURL, Self.document([Self.keyA]), maxAge: maxAge)
            let keySet = JWKSCache(.init(location: .keySet(Self.jwksURL)), fetcher: fetcher, logger: Logger(label: "test"))
            #expect(await keySet.refresh(onDemand: false) == true)
            #expect(keySet.nextRefresh() == expected, "max-age \(String(describing: maxAge))")
        }
    }

    // MARK: - Configuration

    func setupError(_ environment: [String: String]) -> String? {
        do {
            _ = try JWTVerifier.Configuration(runtime: RuntimeConfiguration(environment: environment), leeway: 30)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func theEnvironmentConfiguresAKeySet() throws {
        let both = ["SLUICE_JWT_ISSUER": Self.issuer, "SLUICE_JWT_AUDIENCE": Self.audience]
        let jwks = try JWTVerifier.Configuration(runtime: RuntimeConfiguration(environment: both.merging(["SLUICE_JWT_JWKS_URL": Self.jwksURL]) { $1 }), leeway: 30)
        #expect(jwks.keys == .keySet(.init(location: .keySet(Self.jwksURL))))
        #expect(jwks.issuer == Self.issuer && jwks.audience == Self.audience)
        let discovered = try JWTVerifier.Configuration(runtime: RuntimeConfiguration(environment: both.merging([
            "SLUICE_JWT_ISSUER": "https://id.example/", "SLUICE_JWT_DISCOVERY": "on", "SLUICE_JWT_JWKS_REFRESH": "10m",
        ]) { $1 }), leeway: 30)
        #expect(discovered.keys == .keySet(.init(location: .discovery("https://id.example/.well-known/openid-configuration", issuer: "https://id.example/"),
                                                  refreshInterval: .seconds(600))))
        let explicit = try JWTVerifier.Configuration(runtime: RuntimeConfiguration(environment: both.merging([
            "SLUICE_JWT_DISCOVERY_URL": "http://127.0.0.1:9/openid", "SLUICE_JWT_DISCOVERY": "off",
        ]) { $1 }), leeway: 30)
        #expect(explicit.keys == .keySet(.init(location: .discovery("http://127.0.0.1:9/openid", issuer: Self.issuer))))
        #expect(RuntimeConfiguration(environment: ["SLUICE_JWT_JWKS_URL": Self.jwksURL]).jwtUsesKeySet)
        #expect(RuntimeConfiguration(environment: ["SLUICE_JWT_DISCOVERY": "on"]).jwtUsesKeySet)
        #expect(!RuntimeConfiguration(environment: ["SLUICE_JWT_DISCOVERY": "off", "SLUICE_JWT_SECRET": "x"]).jwtUsesKeySet)

        let needs = "a key set needs SLUICE_JWT_ISSUER and SLUICE_JWT_AUDIENCE (the provider signs tokens for other audiences too)"
        #expect(setupError(["SLUICE_JWT_JWKS_URL": Self.jwksURL]) == needs)
        #expect(setupError(["SLUICE_JWT_JWKS_URL": Self.jwksURL, "SLUICE_JWT_ISSUER": Self.issuer]) == needs)
        #expect(setupError(["SLUICE_JWT_JWKS_URL": Self.jwksURL, "SLUICE_JWT_AUDIENCE": Self.audience]) == needs)
        #expect(setupError(both.merging(["SLUICE_JWT_JWKS_URL": Self.jwksURL, "SLUICE_JWT_SECRET": String(repeating: "s", count: 32)]) { $1 })
                == "set one of SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY, SLUICE_JWT_JWKS_URL, SLUICE_JWT_DISCOVERY_URL (or SLUICE_JWT_DISCOVERY=on), not SLUICE_JWT_SECRET and SLUICE_JWT_JWKS_URL")
        #expect(setupError(both.merging(["SLUICE_JWT_JWKS_URL": Self.jwksURL, "SLUICE_JWT_DISCOVERY": "on"]) { $1 })
                == "set one of SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY, SLUICE_JWT_JWKS_URL, SLUICE_JWT_DISCOVERY_URL (or SLUICE_JWT_DISCOVERY=on), not SLUICE_JWT_JWKS_URL and SLUICE_JWT_DISCOVERY")
        #expect(setupError(both.merging(["SLUICE_JWT_DISCOVERY_URL": Self.jwksURL, "SLUICE_JWT_DISCOVERY": "on"]) { $1 })
                == "set SLUICE_JWT_DISCOVERY=on or SLUICE_JWT_DISCOVERY_URL, not both")
        #expect(setupError(["SLUICE_JWT_DISCOVERY": "on", "SLUICE_JWT_AUDIENCE": Self.audience])?.hasPrefix("SLUICE_JWT_DISCOVERY=on needs SLUICE_JWT_ISSUER") == true)
        #expect(setupError(both.merging(["SLUICE_JWT_DISCOVERY": "maybe"]) { $1 }) == "SLUICE_JWT_DISCOVERY must be on or off")
        #expect(setupError(both.merging(["SLUICE_JWT_JWKS_URL": "file:///etc/passwd"]) { $1 }) == "SLUICE_JWT_JWKS_URL must be an http or https URL")
        #expect(setupError(both.merging(["SLUICE_JWT_ISSUER": "sluice-issuer", "SLUICE_JWT_DISCOVERY": "on"]) { $1 })
                == "SLUICE_JWT_ISSUER must be an http or https URL for discovery")
        for refresh in ["0s", "500ms", "2h", "often"] {
            #expect(setupError(both.merging(["SLUICE_JWT_JWKS_URL": Self.jwksURL, "SLUICE_JWT_JWKS_REFRESH": refresh]) { $1 })
                    == "SLUICE_JWT_JWKS_REFRESH must be a duration from 1s to 1h (e.g. 5m)", "\(refresh)")
        }
        // Nothing configured names every way.
        #expect(setupError([:]) == "set SLUICE_JWT_SECRET (HS256), SLUICE_JWT_PUBLIC_KEY (a PEM file, RS256 or ES256), SLUICE_JWT_JWKS_URL or SLUICE_JWT_DISCOVERY_URL (a provider's key set)")
        // The secret stays as it was, discovery off or not.
        #expect(setupError(["SLUICE_JWT_SECRET": String(repeating: "s", count: 32), "SLUICE_JWT_DISCOVERY": "off"]) == nil)
    }
}
