import CJWT
import Foundation
import Logging
import ServiceLifecycle
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
    /// A key set is configured and has no key of the token's `kid`, even after a refresh.
    case unknownKey = "unknown_kid"
    /// A key set with several keys is configured and the token names none (`kid`).
    case keyIDRequired = "missing_kid"
    /// A key set is configured and none has been fetched yet: the token cannot be checked
    /// (the gateway answers 503, not 401: the token may well be good).
    case keysUnavailable = "keys_unavailable"

    /// The `error_description` sent to the client (RFC 6750 §3).
    public var clientDescription: String {
        switch self {
        case .missing: "a bearer token is required"
        case .expired: "the token has expired"
        case .notYetValid, .issuedInFuture: "the token is not valid yet"
        case .keysUnavailable: "the token cannot be checked now; try again shortly"
        default: "the token is not valid"
        }
    }
}

/// A token whose signature and claims checked out.
public struct VerifiedToken: Sendable, Equatable {
    /// The `sub` claim.
    public var subject: String
    /// The roles from the `roles` claim (array) and the `scope` claim (space-separated; its
    /// entries outside the role alphabet left out).
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

    /// The compact JWS of `claims`, signed with `algorithm` and `key`, with `keyID` as the
    /// header's `kid` when given.
    public static func sign(claims: JSONObject, algorithm: JWTAlgorithm, key: [UInt8], keyID: String? = nil) throws(SigningError) -> String {
        var handle: OpaquePointer?
        guard jwt_new(&handle) == 0, let jwt = handle else { throw SigningError(description: "libjwt could not allocate a token") }
        defer { jwt_free(jwt) }
        if let keyID, jwt_add_header(jwt, "kid", keyID) != 0 { throw SigningError(description: "libjwt refused the kid") }
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

/// Verifies bearer tokens. With a fixed key (an HS256 secret or a PEM public key) libjwt
/// checks the signature; with a provider's key set (``JWKSCache``) swift-crypto checks it with
/// the key the token's `kid` names. Everything else (the algorithm actually used, `exp`, `nbf`,
/// `iat`, `iss`, `aud`, `sub`) is checked here, the same way for both.
///
/// Verified tokens are cached by the SHA-256 of the whole token until their `exp`, so a
/// client presenting the same RS256 token again costs a hash, not an RSA verification. A token
/// verified with a key from a key set remembers that key, and passes from the cache only while
/// the set still holds it: a key the provider withdraws stops its tokens at the next refresh.
public final class JWTVerifier: Sendable {
    public struct Configuration: Sendable {
        /// Where the verification keys come from.
        public enum Keys: Sendable, Equatable {
            /// One key of one algorithm: the HMAC secret (HS256) or a PEM public key (RS256, ES256).
            case fixed(algorithm: JWTAlgorithm, key: [UInt8])
            /// A provider's JSON Web Key Set (RS256 and ES256 keys, chosen by `kid`).
            case keySet(JWKSCache.Configuration)
        }

        public var keys: Keys
        public var issuer: String?
        public var audience: String?
        /// Clock skew allowed for `exp`, `nbf` and `iat`.
        public var leeway: Double
        /// Verified tokens kept; when full, expired ones are evicted, then all.
        public var cacheCapacity: Int

        /// A fixed key: `key` is the HMAC secret (HS256) or the PEM public key (RS256, ES256).
        public init(algorithm: JWTAlgorithm, key: [UInt8], issuer: String? = nil, audience: String? = nil,
                    leeway: Double = 30, cacheCapacity: Int = 10_000) {
            self.init(keys: .fixed(algorithm: algorithm, key: key), issuer: issuer, audience: audience, leeway: leeway, cacheCapacity: cacheCapacity)
        }

        /// Keys from wherever `keys` says.
        public init(keys: Keys, issuer: String? = nil, audience: String? = nil, leeway: Double = 30, cacheCapacity: Int = 10_000) {
            self.keys = keys
            self.issuer = issuer
            self.audience = audience
            self.leeway = leeway
            self.cacheCapacity = cacheCapacity
        }
    }

    /// A verified token in the cache, with the key-set key that verified it (`nil` for a fixed key).
    private struct Cached {
        var token: VerifiedToken
        var key: JWK.Identity?
    }

    public let configuration: Configuration
    /// The provider's key set, when the configuration names one.
    public let keySet: JWKSCache?
    private let cache = Mutex<[[UInt8]: Cached]>([:])
    private let clock: @Sendable () -> Double

    /// A verifier for `configuration`. A key set is fetched over HTTP (5 s timeout, no
    /// redirects, 1 MiB at most) and refreshed by ``backgroundServices``, which the caller
    /// must run; fetch failures are logged to `logger`.
    public init(_ configuration: Configuration, logger: Logger = Logger(label: "sluice.jwt"),
                clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.configuration = configuration
        self.clock = clock
        switch configuration.keys {
        case .fixed:
            keySet = nil
        case .keySet(let keys):
            keySet = JWKSCache(keys, fetcher: JWKSHTTPFetcher(timeout: keys.fetchTimeout, maximumSize: keys.maximumDocumentSize), logger: logger)
        }
    }

    /// A verifier whose keys come from `keySet` (tests give it a fetcher of their own);
    /// `configuration.keys` is not used.
    public init(_ configuration: Configuration, keySet: JWKSCache, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.configuration = configuration
        self.clock = clock
        self.keySet = keySet
    }

    /// What must run for the verifier to work: the key set's refresh schedule, if any.
    public var backgroundServices: [any Service] { keySet.map { [$0] } ?? [] }

    /// The verified token in an `Authorization` header value (`Bearer …`).
    ///
    /// Suspends only with a key set, and only when the set must be fetched first (none yet,
    /// or an unknown `kid`).
    public func verify(authorization: String?) async throws(JWTFailure) -> VerifiedToken {
        guard let authorization, !authorization.isEmpty else { throw .missing }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw .malformed }
        return try await verify(token: String(parts[1]).trimmingCharacters(in: .whitespaces))
    }

    /// The verified claims of a compact JWS.
    public func verify(token: String) async throws(JWTFailure) -> VerifiedToken {
        let segments = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard segments.count == 3, segments.allSatisfy({ $0.allSatisfy(Base64URL.isAlphabet) }),
              !segments[0].isEmpty, !segments[1].isEmpty, !segments[2].isEmpty, token.utf8.count <= 8192 else {
            throw .malformed
        }
        let now = clock()
        let digest = SHA256.digest(token.utf8)
        if let cached = cache.withLock({ $0[digest] }) {
            if let key = cached.key, keySet?.current?.contains(key) != true {
                // The key that verified it has left the set: verify again (which refuses it).
                cache.withLock { _ = $0.removeValue(forKey: digest) }
            } else {
                guard now <= cached.token.expiresAt + configuration.leeway else { throw .expired }
                return cached.token
            }
        }
        guard let headerBytes = Base64URL.decode(segments[0]),
              case .object(let header)? = try? JSONParser().parse(headerBytes) else { throw .malformed }
        guard let payloadBytes = Base64URL.decode(segments[1]),
              case .object(let claims)? = try? JSONParser().parse(payloadBytes) else { throw .malformed }

        let verifiedBy: JWK.Identity?
        if let keySet {
            verifiedBy = try await verifySignature(token, segments: segments, header: header, keySet: keySet)
        } else if case .fixed(let algorithm, let key) = configuration.keys {
            try verifySignature(token, header: header, algorithm: algorithm, key: key)
            verifiedBy = nil
        } else {
            throw .wrongAlgorithm  // a key set configured without its cache: unreachable by the initializers
        }

        let verified = try check(claims, now: now)
        cache.withLock { cache in
            if cache.count >= configuration.cacheCapacity {
                cache = cache.filter { now <= $0.value.token.expiresAt + configuration.leeway }
                if cache.count >= configuration.cacheCapacity { cache.removeAll(keepingCapacity: true) }
            }
            cache[digest] = Cached(token: verified, key: verifiedBy)
        }
        return verified
    }

    /// libjwt checks the signature with the fixed key.
    private func verifySignature(_ token: String, header: JSONObject, algorithm: JWTAlgorithm, key: [UInt8]) throws(JWTFailure) {
        // The header's algorithm must be the configured one before libjwt sees the token:
        // libjwt verifies with whatever the header names (an HS256 token "signed" with the
        // RS256 public key would pass) and skips verification for `none`.
        guard header["alg"]?.stringValue == algorithm.rawValue else { throw .wrongAlgorithm }
        var handle: OpaquePointer?
        let status = key.withUnsafeBufferPointer { key in
            jwt_decode(&handle, token, key.baseAddress, Int32(key.count))
        }
        guard status == 0, let jwt = handle else { throw .badSignature }
        let used = jwt_get_alg(jwt)
        jwt_free(jwt)
        guard used == algorithm.libjwt else { throw .wrongAlgorithm }
    }

    /// swift-crypto checks the signature with the key set's key for the header's `kid`; the
    /// header's `alg` must be RS256 or ES256 and the key's (no HS256, no `none`, no RSA token
    /// checked with an EC key). Keys a header carries itself (`jwk`, `jku`, `x5u`, `x5c`) are
    /// never used; a `crit` header (extensions this verifier would have to understand) is refused.
    private func verifySignature(_ token: String, segments: [Substring.UTF8View], header: JSONObject,
                                 keySet: JWKSCache) async throws(JWTFailure) -> JWK.Identity {
        guard let name = header["alg"]?.stringValue, let algorithm = JWTAlgorithm(rawValue: name), algorithm != .hs256 else {
            throw .wrongAlgorithm
        }
        guard header["crit"] == nil else { throw .malformed }
        var keyID: String?
        if let kid = header["kid"] {
            guard let text = kid.stringValue else { throw .malformed }
            keyID = text
        }
        let key = try await keySet.key(id: keyID, algorithm: algorithm)
        guard let signature = Base64URL.decode(segments[2]),
              key.isValidSignature(signature, for: Array(token.utf8[..<segments[1].endIndex])) else { throw .badSignature }
        return key.identity
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
            // An OAuth scope such as `read:jobs` or `api://x/read` names no Sluice role: ignored,
            // not refused (providers put them in every token). The `roles` claim is the gateway's
            // to refuse (`Caller.isValidRole`).
            for role in scope.split(separator: " ") where Caller.isValidRole(String(role)) { roles.insert(String(role)) }
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

    /// The configuration the environment asks for, exactly one of: `SLUICE_JWT_SECRET` (HS256),
    /// `SLUICE_JWT_PUBLIC_KEY` (a PEM file; RS256 or ES256 by its key type),
    /// `SLUICE_JWT_JWKS_URL` (a provider's key set) or `SLUICE_JWT_DISCOVERY_URL` /
    /// `SLUICE_JWT_DISCOVERY=on` (the key set the provider's OpenID Connect discovery document
    /// names), with `SLUICE_JWT_ISSUER` / `SLUICE_JWT_AUDIENCE`, both required with a key set.
    ///
    /// - Throws: ``SetupError`` saying which setting is missing, doubled or wrong.
    public init(runtime: RuntimeConfiguration, leeway: Double, cacheCapacity: Int = 10_000) throws(SetupError) {
        let discoveryURL: String?
        switch runtime.jwtDiscovery?.lowercased() {
        case nil, "off", "false", "no", "0":
            discoveryURL = runtime.jwtDiscoveryURL
        case "on", "true", "yes", "1":
            guard runtime.jwtDiscoveryURL == nil else {
                throw SetupError(description: "set SLUICE_JWT_DISCOVERY=on or SLUICE_JWT_DISCOVERY_URL, not both")
            }
            guard let issuer = runtime.jwtIssuer else {
                throw SetupError(description: "SLUICE_JWT_DISCOVERY=on needs SLUICE_JWT_ISSUER (the discovery document is ISSUER/.well-known/openid-configuration)")
            }
            discoveryURL = (issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer) + "/.well-known/openid-configuration"
        default:
            throw SetupError(description: "SLUICE_JWT_DISCOVERY must be on or off")
        }
        let given = [("SLUICE_JWT_SECRET", runtime.jwtSecret), ("SLUICE_JWT_PUBLIC_KEY", runtime.jwtPublicKeyPath),
                     ("SLUICE_JWT_JWKS_URL", runtime.jwtJWKSURL),
                     (runtime.jwtDiscoveryURL == nil ? "SLUICE_JWT_DISCOVERY" : "SLUICE_JWT_DISCOVERY_URL", discoveryURL)]
            .filter { $0.1 != nil }.map(\.0)
        guard given.count <= 1 else {
            throw SetupError(description: "set one of SLUICE_JWT_SECRET, SLUICE_JWT_PUBLIC_KEY, SLUICE_JWT_JWKS_URL, SLUICE_JWT_DISCOVERY_URL (or SLUICE_JWT_DISCOVERY=on), not \(given.joined(separator: " and "))")
        }
        if let secret = runtime.jwtSecret {
            guard secret.utf8.count >= 32 else {
                throw SetupError(description: "SLUICE_JWT_SECRET must be at least 32 bytes (RFC 7518 §3.2)")
            }
            self.init(algorithm: .hs256, key: Array(secret.utf8))
        } else if let path = runtime.jwtPublicKeyPath {
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
        } else if runtime.jwtJWKSURL != nil || discoveryURL != nil {
            // A provider signs tokens for many clients: without both checks, any of its tokens would pass.
            guard let issuer = runtime.jwtIssuer, runtime.jwtAudience != nil else {
                throw SetupError(description: "a key set needs SLUICE_JWT_ISSUER and SLUICE_JWT_AUDIENCE (the provider signs tokens for other audiences too)")
            }
            let location: JWKSCache.Configuration.Location
            if let url = runtime.jwtJWKSURL {
                guard JWKSCache.isHTTPURL(url) else { throw SetupError(description: "SLUICE_JWT_JWKS_URL must be an http or https URL") }
                location = .keySet(url)
            } else {
                let url = discoveryURL!
                guard JWKSCache.isHTTPURL(url) else {
                    throw SetupError(description: "\(runtime.jwtDiscoveryURL == nil ? "SLUICE_JWT_ISSUER" : "SLUICE_JWT_DISCOVERY_URL") must be an http or https URL for discovery")
                }
                location = .discovery(url, issuer: issuer)
            }
            var keys = JWKSCache.Configuration(location: location)
            if let text = runtime.jwtJWKSRefresh {
                guard let interval = DurationParser.parse(text), interval >= .seconds(1), interval <= .seconds(3600) else {
                    throw SetupError(description: "SLUICE_JWT_JWKS_REFRESH must be a duration from 1s to 1h (e.g. 5m)")
                }
                keys.refreshInterval = interval
            }
            self.init(keys: .keySet(keys))
        } else {
            throw SetupError(description: "set SLUICE_JWT_SECRET (HS256), SLUICE_JWT_PUBLIC_KEY (a PEM file, RS256 or ES256), SLUICE_JWT_JWKS_URL or SLUICE_JWT_DISCOVERY_URL (a provider's key set)")
        }
        issuer = runtime.jwtIssuer
        audience = runtime.jwtAudience
        self.leeway = leeway
        self.cacheCapacity = cacheCapacity
    }
}
