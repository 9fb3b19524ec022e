import CJWT
import Foundation
import Sluice
import Synchronization

/// The signature algorithms the gateway accepts; one is configured, every other is refused.
public enum JWTAlgorithm: String, Sendable, CaseIterable {
    case hs256 = "HS256"
    case rs256 = "RS256"
    case es256 = "ES256"

    var libjwt: jwt_alg_t {
        switch self {
        case .hs256: JWT_ALG_HS256
        case .rs256: JWT_ALG_RS256
        case .es256: JWT_ALG_ES256
        }
    }

    /// The algorithm a PEM key (public or private) is for: RS256 for an RSA key, ES256 for an
    /// EC key (read from the key's algorithm identifier, not guessed from the file name).
    public static func forKey(pem: String) -> JWTAlgorithm? {
        if pem.contains("BEGIN RSA PUBLIC KEY") || pem.contains("BEGIN RSA PRIVATE KEY") { return .rs256 }
        if pem.contains("BEGIN EC PUBLIC KEY") || pem.contains("BEGIN EC PRIVATE KEY") { return .es256 }
        let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let der = Data(base64Encoded: body) else { return nil }
        let bytes = [UInt8](der)
        let rsaEncryption: [UInt8] = [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01]  // 1.2.840.113549.1.1.1
        let ecPublicKey: [UInt8] = [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]  // 1.2.840.10045.2.1
        if bytes.contains(subsequence: rsaEncryption) { return .rs256 }
        if bytes.contains(subsequence: ecPublicKey) { return .es256 }
        return nil
    }
}

extension [UInt8] {
    fileprivate func contains(subsequence: [UInt8]) -> Bool {
        guard count >= subsequence.count else { return false }
        for start in 0...(count - subsequence.count) where self[start..<(start + subsequence.count)].elementsEqual(subsequence) {
            return true
        }
        return false
    }
}

/// Why a token was refused. The client is told only `invalid_token` and, where it helps and
/// reveals nothing (expired, not yet valid), a short description.
public enum JWTFailure: String, Error, Sendable, CaseIterable {
    case missing
    case malformed
    case wrongAlgorithm = "wrong_algorithm"
    case badSignature = "bad_signature"
    case missingExpiry = "missing_exp"
    case expired
    case notYetValid = "not_yet_valid"
    case issuedInFuture = "issued_in_future"
    case wrongIssuer = "wrong_issuer"
    case wrongAudience = "wrong_audience"
    case missingSubject = "missing_sub"

    /// The `error_description` sent to the client (RFC 6750 §3).
    public var clientDescription: String {
        switch self {
        case .missing: "a bearer token is required"
        case .expired: "the token has expired"
        case .notYetValid, .issuedInFuture: "the token is not valid yet"
        default: "the token is not valid"
        }
    }
}

/// A token whose signature and claims checked out.
public struct VerifiedToken: Sendable, Equatable {
    /// The `sub` claim.
    public var subject: String
    /// The roles from the `roles` claim (array) and the `scope` claim (space-separated).
    public var roles: Set<String>
    /// The `exp` claim, seconds since 1970.
    public var expiresAt: Double

    public init(subject: String, roles: Set<String>, expiresAt: Double) {
        self.subject = subject
        self.roles = roles
        self.expiresAt = expiresAt
    }
}

/// Signs tokens (`sluice token`, tests). The key is the shared secret for HS256 or a PEM
/// private key for RS256 / ES256.
public enum JWTSigner {
    public struct SigningError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The compact JWS of `claims`, signed with `algorithm` and `key`.
    public static func sign(claims: JSONObject, algorithm: JWTAlgorithm, key: [UInt8]) throws(SigningError) -> String {
        var handle: OpaquePointer?
        guard jwt_new(&handle) == 0, let jwt = handle else { throw SigningError(description: "libjwt could not allocate a token") }
        defer { jwt_free(jwt) }
        guard jwt_add_grants_json(jwt, JSONValue.object(claims).serializedString) == 0 else {
            throw SigningError(description: "libjwt refused the claims")
        }
        let status = key.withUnsafeBufferPointer { jwt_set_alg(jwt, algorithm.libjwt, $0.baseAddress, Int32($0.count)) }
        guard status == 0 else { throw SigningError(description: "libjwt refused the \(algorithm.rawValue) key") }
        guard let encoded = jwt_encode_str(jwt) else {
            throw SigningError(description: "libjwt could not sign with the \(algorithm.rawValue) key (is it a private key of that type?)")
        }
        defer { sluice_jwt_free_string(encoded) }
        return String(cString: encoded)
    }
}

/// Verifies bearer tokens: libjwt checks the signature; everything libjwt does not check (the
/// algorithm actually used, `exp`, `nbf`, `iat`, `iss`, `aud`) is checked here.
///
/// Verified tokens are cached by the SHA-256 of the whole token until their `exp`, so a
/// client presenting the same RS256 token again costs a hash, not an RSA verification.
public final class JWTVerifier: Sendable {
    public struct Configuration: Sendable {
        public var algorithm: JWTAlgorithm
        /// The HMAC secret (HS256) or the PEM public key (RS256, ES256).
        public var key: [UInt8]
        public var issuer: String?
        public var audience: String?
        /// Clock skew allowed for `exp`, `nbf` and `iat`.
        public var leeway: Double
        /// Verified tokens kept; when full, expired ones are evicted, then all.
        public var cacheCapacity: Int

        public init(algorithm: JWTAlgorithm, key: [UInt8], issuer: String? = nil, audience: String? = nil,
                    leeway: Double = 30, cacheCapacity: Int = 10_000) {
            self.algorithm = algorithm
            self.key = key
            self.issuer = issuer
            self.audience = audience
            self.leeway = leeway
            self.cacheCapacity = cacheCapacity
        }
    }

    public let configuration: Configuration
    private let cache = Mutex<[[UInt8]: VerifiedToken]>([:])
    private let clock: @Sendable () -> Double

    public init(_ configuration: Configuration, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.configuration = configuration
        self.clock = clock
    }

    /// The verified token in an `Authorization` header value (`Bearer …`).
    public func verify(authorization: String?) throws(JWTFailure) -> VerifiedToken {
        guard let authorization, !authorization.isEmpty else { throw .missing }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw .malformed }
        return try verify(token: String(parts[1]).trimmingCharacters(in: .whitespaces))
    }

    /// The verified claims of a compact JWS.
    public func verify(token: String) throws(JWTFailure) -> VerifiedToken {
        let segments = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard segments.count == 3, segments.allSatisfy({ $0.allSatisfy(Base64URL.isAlphabet) }),
              !segments[0].isEmpty, !segments[1].isEmpty, !segments[2].isEmpty, token.utf8.count <= 8192 else {
            throw .malformed
        }
        let now = clock()
        let digest = SHA256.digest(token.utf8)
        if let cached = cache.withLock({ $0[digest] }) {
            guard now <= cached.expiresAt + configuration.leeway else { throw .expired }
            return cached
        }
        // The header's algorithm must be the configured one before libjwt sees the token:
        // libjwt verifies with whatever the header names (an HS256 token "signed" with the
        // RS256 public key would pass) and skips verification for `none`.
        guard let headerBytes = Base64URL.decode(segments[0]),
              case .object(let header)? = try? JSONParser().parse(headerBytes) else { throw .malformed }
        guard header["alg"]?.stringValue == configuration.algorithm.rawValue else { throw .wrongAlgorithm }
        guard let payloadBytes = Base64URL.decode(segments[1]),
              case .object(let claims)? = try? JSONParser().parse(payloadBytes) else { throw .malformed }

        var handle: OpaquePointer?
        let status = configuration.key.withUnsafeBufferPointer { key in
            jwt_decode(&handle, token, key.baseAddress, Int32(key.count))
        }
        guard status == 0, let jwt = handle else { throw .badSignature }
        let algorithm = jwt_get_alg(jwt)
        jwt_free(jwt)
        guard algorithm == configuration.algorithm.libjwt else { throw .wrongAlgorithm }

        let verified = try check(claims, now: now)
        cache.withLock { cache in
            if cache.count >= configuration.cacheCapacity {
                cache = cache.filter { now <= $0.value.expiresAt + configuration.leeway }
                if cache.count >= configuration.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            }
            cache[digest] = verified
        }
        return verified
    }

    private func check(_ claims: JSONObject, now: Double) throws(JWTFailure) -> VerifiedToken {
        let leeway = configuration.leeway
        guard let expiry = claims["exp"]?.doubleValue else { throw .missingExpiry }
        guard now <= expiry + leeway else { throw .expired }
        if let notBefore = claims["nbf"] {
            guard let seconds = notBefore.doubleValue else { throw .malformed }
            guard seconds <= now + leeway else { throw .notYetValid }
        }
        if let issuedAt = claims["iat"] {
            guard let seconds = issuedAt.doubleValue else { throw .malformed }
            guard seconds <= now + leeway else { throw .issuedInFuture }
        }
        if let issuer = configuration.issuer, claims["iss"]?.stringValue != issuer { throw .wrongIssuer }
        if let audience = configuration.audience {
            switch claims["aud"] {
            case .string(let value)? where value == audience: break
            case .array(let values)? where values.contains(.string(audience)): break
            default: throw .wrongAudience
            }
        }
        guard let subject = claims["sub"]?.stringValue, !subject.isEmpty else { throw .missingSubject }
        var roles: Set<String> = []
        if case .array(let values)? = claims["roles"] {
            for value in values { if let role = value.stringValue { roles.insert(role) } }
        }
        if let scope = claims["scope"]?.stringValue {
            for role in scope.split(separator: " ") { roles.insert(String(role)) }
        }
        return VerifiedToken(subject: subject, roles: roles, expiresAt: expiry)
    }
}

/// Base64url without padding (RFC 4648 §5), as JWS uses it.
public enum Base64URL {
    static func isAlphabet(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"): true
        default: false
        }
    }

    /// The bytes of `text`; `nil` when it is not base64url.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var standard = String(decoding: text, as: UTF8.self)
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        if standard.utf8.count % 4 == 1 { return nil }
        while standard.utf8.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard).map { [UInt8]($0) }
    }

    /// `bytes` as base64url without padding.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }
}

extension JWTVerifier.Configuration {
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The configuration the environment asks for: `SLUICE_JWT_SECRET` (HS256) or
    /// `SLUICE_JWT_PUBLIC_KEY` (a PEM file; RS256 or ES256 by its key type), with
    /// `SLUICE_JWT_ISSUER` / `SLUICE_JWT_AUDIENCE`.
    public init(runtime: RuntimeConfiguration, leeway: Double, cacheCapacity: Int = 10_000) throws(SetupError) {
        switch (runtime.jwtSecret, runtime.jwtPublicKeyPath) {
        case (.some, .some):
            throw SetupError(description: "set SLUICE_JWT_SECRET or SLUICE_JWT_PUBLIC_KEY, not both")
        case (nil, nil):
            throw SetupError(description: "set SLUICE_JWT_SECRET (HS256) or SLUICE_JWT_PUBLIC_KEY (a PEM file, RS256 or ES256)")
        case (let secret?, nil):
            guard secret.utf8.count >= 32 else {
                throw SetupError(description: "SLUICE_JWT_SECRET must be at least 32 bytes (RFC 7518 §3.2)")
            }
            self.init(algorithm: .hs256, key: Array(secret.utf8))
        case (nil, let path?):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SetupError(description: "SLUICE_JWT_PUBLIC_KEY: cannot read \(path)")
            }
            let pem = String(decoding: data, as: UTF8.self)
            guard !pem.contains("PRIVATE KEY") else {
                throw SetupError(description: "SLUICE_JWT_PUBLIC_KEY: \(path) holds a private key; give the gateway the public key only")
            }
            guard let algorithm = JWTAlgorithm.forKey(pem: pem) else {
                throw SetupError(description: "SLUICE_JWT_PUBLIC_KEY: \(path) is not an RSA or EC public key in PEM form")
            }
            self.init(algorithm: algorithm, key: [UInt8](data))
        }
        issuer = runtime.jwtIssuer
        audience = runtime.jwtAudience
        self.leeway = leeway
        self.cacheCapacity = cacheCapacity
    }
}
