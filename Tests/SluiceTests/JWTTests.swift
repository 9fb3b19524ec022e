import Foundation
import Sluice
import SluiceHTTP
import Testing

/// Key pairs made by the `openssl` command line, once per test run.
enum TestKeys {
    struct Pair: Sendable {
        var privatePEM: [UInt8]
        var publicPEM: [UInt8]
        var privatePath: String
    }

    static let directory: String = {
        let path = NSTemporaryDirectory() + "sluice-jwt-keys-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static let rsa = generate(name: "rsa", arguments: ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    static let rsaOther = generate(name: "rsa-other", arguments: ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    static let ec = generate(name: "ec", arguments: ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])

    static func openssl(_ arguments: [String], input: [UInt8]? = nil) -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let stdin = Pipe()
        process.standardInput = stdin
        try! process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input)) }
        try? stdin.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        precondition(process.terminationStatus == 0, "openssl \(arguments) failed")
        return [UInt8](data)
    }

    static func generate(name: String, arguments: [String]) -> Pair {
        let privatePath = "\(directory)/\(name).pem"
        _ = openssl(arguments + ["-out", privatePath])
        let publicPEM = openssl(["pkey", "-in", privatePath, "-pubout"])
        let privatePEM = [UInt8](FileManager.default.contents(atPath: privatePath)!)
        return Pair(privatePEM: privatePEM, publicPEM: publicPEM, privatePath: privatePath)
    }
}

@Suite("JWT verification")
struct JWTTests {
    static let secret = Array("a-test-secret-of-32-bytes-or-so!".utf8)
    let now = Date().timeIntervalSince1970.rounded()

    func claims(_ extra: JSONObject = [:], dropping: [String] = []) -> JSONObject {
        var claims: JSONObject = [
            "sub": "user-1", "roles": ["ingest", "analyst"],
            "iat": .int(Int64(now)), "exp": .int(Int64(now) + 600),
        ]
        for (key, value) in extra { claims[key] = value }
        for key in dropping { claims[key] = nil }
        return claims
    }

    func hs256(_ claims: JSONObject, secret: [UInt8] = JWTTests.secret) throws -> String {
        try JWTSigner.sign(claims: claims, algorithm: .hs256, key: secret)
    }

    func verifier(_ algorithm: JWTAlgorithm = .hs256, key: [UInt8] = JWTTests.secret, issuer: String? = nil,
                  audience: String? = nil, clock: (@Sendable () -> Double)? = nil) -> JWTVerifier {
        let configuration = JWTVerifier.Configuration(algorithm: algorithm, key: key, issuer: issuer, audience: audience, leeway: 30)
        if let clock { return JWTVerifier(configuration, clock: clock) }
        return JWTVerifier(configuration)
    }

    func failure(_ verifier: JWTVerifier, authorization: String?) async -> JWTFailure? {
        do {
            _ = try await verifier.verify(authorization: authorization)
            return nil
        } catch {
            return error
        }
    }

    /// The unsigned compact form of a header and claims, as an attacker would write it.
    func forge(header: JSONObject, claims: JSONObject, signature: String) -> String {
        Base64URL.encode(JSONValue.object(header).serializedBytes) + "." + Base64URL.encode(JSONValue.object(claims).serializedBytes) + "." + signature
    }

    @Test func validHS256TokenPassesWithItsSubjectAndRoles() async throws {
        let token = try hs256(claims())
        let verified = try await verifier().verify(authorization: "Bearer \(token)")
        #expect(verified == VerifiedToken(subject: "user-1", roles: ["ingest", "analyst"], expiresAt: now + 600))
        // The scheme is case-insensitive (RFC 7235); roles also come from `scope`.
        let scoped = try hs256(claims(["scope": "admin analyst"], dropping: ["roles"]))
        #expect(try await verifier().verify(authorization: "bearer \(scoped)").roles == ["admin", "analyst"])
        // A scope outside the role alphabet names no role (an OAuth scope, or a comma that once became two roles).
        let oauth = try hs256(claims(["scope": "read:jobs analyst x,admin"], dropping: ["roles"]))
        #expect(try await verifier().verify(authorization: "Bearer \(oauth)").roles == ["analyst"])
    }

    @Test func validRS256AndES256TokensPass() async throws {
        let rsa = TestKeys.rsa, ec = TestKeys.ec
        let rsToken = try JWTSigner.sign(claims: claims(), algorithm: .rs256, key: rsa.privatePEM)
        #expect(try await verifier(.rs256, key: rsa.publicPEM).verify(token: rsToken).subject == "user-1")
        let esToken = try JWTSigner.sign(claims: claims(), algorithm: .es256, key: ec.privatePEM)
        #expect(try await verifier(.es256, key: ec.publicPEM).verify(token: esToken).subject == "user-1")
        // JWS carries ES256 signatures as R‖S (64 bytes), not DER.
        #expect(Base64URL.decode(esToken.split(separator: ".")[2].utf8)?.count == 64)
        // The algorithm is read from the key itself.
        #expect(JWTAlgorithm.forKey(pem: String(decoding: rsa.publicPEM, as: UTF8.self)) == .rs256)
        #expect(JWTAlgorithm.forKey(pem: String(decoding: ec.publicPEM, as: UTF8.self)) == .es256)
        #expect(JWTAlgorithm.forKey(pem: String(decoding: rsa.privatePEM, as: UTF8.self)) == .rs256)
        #expect(JWTAlgorithm.forKey(pem: String(decoding: ec.privatePEM, as: UTF8.self)) == .es256)
        #expect(JWTAlgorithm.forKey(pem: "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n") == nil)
    }

    @Test func rs256SignedByOpenSSLItselfPasses() async throws {
        // A signature made without libjwt: the verifier speaks the standard, not only itself.
        let rsa = TestKeys.rsa
        let signingInput = Base64URL.encode(Array(#"{"alg":"RS256","typ":"JWT"}"#.utf8)) + "." + Base64URL.encode(JSONValue.object(claims()).serializedBytes)
        let signature = TestKeys.openssl(["dgst", "-sha256", "-sign", rsa.privatePath], input: Array(signingInput.utf8))
        let token = signingInput + "." + Base64URL.encode(signature)
        #expect(try await verifier(.rs256, key: rsa.publicPEM).verify(token: token).subject == "user-1")
    }

    @Test func theTokenCorpusIsRefused() async throws {
        let hs = verifier()
        let valid = try hs256(claims())
        let parts = valid.split(separator: ".").map(String.init)
        #expect(await failure(hs, authorization: nil) == .missing)
        #expect(await failure(hs, authorization: "") == .missing)
        #expect(await failure(hs, authorization: "Basic dXNlcjpwYXNz") == .malformed)
        #expect(await failure(hs, authorization: "Bearer") == .malformed)
        #expect(await failure(hs, authorization: "Bearer not-a-token") == .malformed)
        #expect(await failure(hs, authorization: "Bearer a.b") == .malformed)
        #expect(await failure(hs, authorization: "Bearer \(parts[0]).\(parts[1]).\(parts[2]).x") == .malformed)
        #expect(await failure(hs, authorization: "Bearer \(parts[0]).\(parts[1]).") == .malformed)
        #expect(await failure(hs, authorization: "Bearer e30.e30.e30") == .wrongAlgorithm)
        #expect(await failure(hs, authorization: "Bearer bm90anNvbg.\(parts[1]).\(parts[2])") == .malformed)

        // alg none, with and without a signature segment.
        let none = forge(header: ["alg": "none", "typ": "JWT"], claims: claims(), signature: "")
        #expect(await failure(hs, authorization: "Bearer \(none)") == .malformed)
        #expect(await failure(hs, authorization: "Bearer \(none)AAAA") == .wrongAlgorithm)
        #expect(await failure(hs, authorization: "Bearer \(forge(header: ["alg": "None"], claims: claims(), signature: "AAAA"))") == .wrongAlgorithm)

        // Bad signature: signed with another secret; a signature of another token.
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(), secret: Array("another-secret".utf8)))") == .badSignature)
        let other = try hs256(claims(["sub": "user-2"])).split(separator: ".").map(String.init)
        #expect(await failure(hs, authorization: "Bearer \(parts[0]).\(parts[1]).\(other[2])") == .badSignature)

        // Tampered claims under the original signature.
        let tampered = Base64URL.encode(JSONValue.object(claims(["roles": ["admin"]])).serializedBytes)
        #expect(await failure(hs, authorization: "Bearer \(parts[0]).\(tampered).\(parts[2])") == .badSignature)

        // Time claims (leeway 30 s).
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(["exp": .int(Int64(now) - 31)])))") == .expired)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(["exp": .int(Int64(now) - 10)])))") == nil)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(dropping: ["exp"])))") == .missingExpiry)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(["exp": "tomorrow"])))") == .missingExpiry)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(["nbf": .int(Int64(now) + 3600)])))") == .notYetValid)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(["nbf": .int(Int64(now) + 10)])))") == nil)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(["iat": .int(Int64(now) + 3600)])))") == .issuedInFuture)
        #expect(await failure(hs, authorization: "Bearer \(try hs256(claims(dropping: ["sub"])))") == .missingSubject)
    }

    @Test func issuerAndAudienceAreCheckedWhenConfigured() async throws {
        let checked = verifier(issuer: "https://issuer.example", audience: "sluice")
        let good = claims(["iss": "https://issuer.example", "aud": "sluice"])
        #expect(await failure(checked, authorization: "Bearer \(try hs256(good))") == nil)
        #expect(await failure(checked, authorization: "Bearer \(try hs256(claims(["iss": "https://issuer.example", "aud": ["other", "sluice"]])))") == nil)
        #expect(await failure(checked, authorization: "Bearer \(try hs256(claims(["iss": "https://evil.example", "aud": "sluice"])))") == .wrongIssuer)
        #expect(await failure(checked, authorization: "Bearer \(try hs256(claims(["aud": "sluice"])))") == .wrongIssuer)
        #expect(await failure(checked, authorization: "Bearer \(try hs256(claims(["iss": "https://issuer.example", "aud": "other"])))") == .wrongAudience)
        #expect(await failure(checked, authorization: "Bearer \(try hs256(claims(["iss": "https://issuer.example"])))") == .wrongAudience)
        // Unconfigured, neither is required.
        #expect(await failure(verifier(), authorization: "Bearer \(try hs256(claims(["iss": "anyone", "aud": "anything"])))") == nil)
    }

    @Test func algorithmConfusionIsRefused() async throws {
        let rsa = TestKeys.rsa
        let rs = verifier(.rs256, key: rsa.publicPEM)
        // HS256 "signed" with the RSA public key as the HMAC secret: libjwt alone accepts it.
        let confused = try JWTSigner.sign(claims: claims(), algorithm: .hs256, key: rsa.publicPEM)
        #expect(await failure(rs, authorization: "Bearer \(confused)") == .wrongAlgorithm)
        // An RS256 token made with another key; an ES256 token where RS256 is expected.
        #expect(await failure(rs, authorization: "Bearer \(try JWTSigner.sign(claims: claims(), algorithm: .rs256, key: TestKeys.rsaOther.privatePEM))") == .badSignature)
        #expect(await failure(rs, authorization: "Bearer \(try JWTSigner.sign(claims: claims(), algorithm: .es256, key: TestKeys.ec.privatePEM))") == .wrongAlgorithm)
        // An RS256 token where HS256 is expected.
        #expect(await failure(verifier(), authorization: "Bearer \(try JWTSigner.sign(claims: claims(), algorithm: .rs256, key: rsa.privatePEM))") == .wrongAlgorithm)
    }

    @Test func aCachedTokenStillExpires() async throws {
        final class Clock: @unchecked Sendable { var now: Double = 0 }
        let clock = Clock()
        clock.now = now
        let rsa = TestKeys.rsa
        let rs = verifier(.rs256, key: rsa.publicPEM, clock: { clock.now })
        let token = try JWTSigner.sign(claims: claims(), algorithm: .rs256, key: rsa.privatePEM)
        #expect(try await rs.verify(token: token).subject == "user-1")
        #expect(try await rs.verify(token: token).subject == "user-1")
        clock.now = now + 600 + 31
        #expect(await failure(rs, authorization: "Bearer \(token)") == .expired)
        // A token differing in one signature byte is not served from the cache.
        clock.now = now
        var signature = Base64URL.decode(token.split(separator: ".")[2].utf8)!
        signature[0] ^= 1
        let parts = token.split(separator: ".")
        #expect(await failure(rs, authorization: "Bearer \(parts[0]).\(parts[1]).\(Base64URL.encode(signature))") == .badSignature)
    }

    @Test func hmacMatchesRFC4231() {
        // RFC 4231 test case 2.
        let mac = HMACSHA256.authenticationCode(for: Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        #expect(mac.map { String(format: "%02x", $0) }.joined() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Test case 6: a key longer than the block is hashed first.
        let long = HMACSHA256.authenticationCode(for: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8), key: [UInt8](repeating: 0xaa, count: 131))
        #expect(long.map { String(format: "%02x", $0) }.joined() == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }
}
