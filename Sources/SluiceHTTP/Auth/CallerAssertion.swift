// swift-crypto 3 does not mark its key types Sendable; they are immutable values whose BoringSSL
// handles are only read (signing and verifying are safe from any thread).
@preconcurrency import Crypto
import Foundation
import HTTPTypes
import Sluice

/// Who the gateway found a request to come from, as it hands the request to a function: the
/// verified subject and roles, bound to the one request (method, target and body), to the
/// function it is for and to a short lifetime, with an id of its own so that it is accepted
/// once, signed with the gateway's Ed25519 key. Functions hold only the public half, so they
/// can check an assertion but not make one: a caller that reaches a function without passing
/// the gateway (a pod in the cluster, a port left open) has nothing a function accepts.
///
/// Wire form (header `X-Sluice-Assertion`): `sa1.<payload>.<signature>`, base64url without
/// padding; the payload is a JSON object `{"sub", "roles", "aud", "method", "target", "bdy",
/// "jti", "rid", "iat", "exp"}` and the signature covers `sa1.<payload>`. Roles travel as a
/// JSON array and reach handlers as a list (``SluiceRequestContext/caller``), never as text
/// split again.
public struct CallerAssertion: Sendable, Equatable {
    /// What an assertion says of the request's body.
    public enum Body: Sendable, Equatable {
        /// The SHA-256 of the whole body, lowercase hex (an empty body's for a GET). The gateway
        /// binds every body it can hold: up to ``CallerAssertion/boundBodyLimit`` bytes with a
        /// `Content-Length`.
        case sha256(String)
        /// A body the gateway streamed (larger than the limit, or without a length): bound by
        /// the request alone, not by its bytes.
        case streamed

        /// The binding of `bytes`.
        public static func digest(of bytes: some Collection<UInt8>) -> Body { .sha256(Sluice.SHA256.hex(bytes)) }

        var wire: String {
            switch self {
            case .sha256(let hex): "sha256:\(hex)"
            case .streamed: "stream"
            }
        }

        init?(wire: String) {
            if wire == "stream" { self = .streamed; return }
            guard wire.hasPrefix("sha256:") else { return nil }
            let hex = wire.dropFirst("sha256:".count)
            guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else { return nil }
            self = .sha256(String(hex))
        }
    }

    /// The largest body whose digest the gateway binds (1 MiB); larger or unlengthed bodies
    /// stream through unbuffered and are bound as ``Body/streamed``.
    public static let boundBodyLimit = 1 << 20

    /// The token's `sub`, or `anonymous` for a public route.
    public var subject: String
    /// The token's roles, sorted.
    public var roles: [String]
    /// The functions the assertion is for (the gateway names the one function of the route).
    public var audience: [String]
    /// The request's method (`GET`).
    public var method: String
    /// The request target as the function receives it: the path and query (`/api/v1/jobs?limit=5`).
    public var target: String
    /// The request's body.
    public var body: Body
    /// A random id of this assertion: a function accepts it once.
    public var id: String
    /// The gateway's request id.
    public var requestID: String?
    /// Unix seconds.
    public var issuedAt: Int64
    /// Unix seconds; at most ``CallerAssertionVerifier/maxLifetime`` after ``issuedAt``.
    public var expiresAt: Int64

    public init(subject: String, roles: [String], audience: [String], method: String, target: String, body: Body,
                id: String = RandomHex.make(words: 2), requestID: String?, issuedAt: Int64, expiresAt: Int64) {
        self.subject = subject
        self.roles = roles.sorted()
        self.audience = audience
        self.method = method
        self.target = target
        self.body = body
        self.id = id
        self.requestID = requestID
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }

    /// The version prefix of the wire form.
    static let prefix = "sa1"

    var payload: JSONValue {
        var object: JSONObject = [
            "sub": .string(subject), "roles": .array(roles.map(JSONValue.string)),
            "aud": .array(audience.map(JSONValue.string)),
            "method": .string(method), "target": .string(target), "bdy": .string(body.wire), "jti": .string(id),
            "iat": .int(issuedAt), "exp": .int(expiresAt),
        ]
        if let requestID { object["rid"] = .string(requestID) }
        return .object(object)
    }

    init?(payload: JSONValue) {
        guard let subject = payload["sub"]?.stringValue, let roles = payload["roles"]?.arrayValue,
              let audience = payload["aud"]?.arrayValue,
              let method = payload["method"]?.stringValue, let target = payload["target"]?.stringValue,
              let body = payload["bdy"]?.stringValue.flatMap(Body.init(wire:)),
              let id = payload["jti"]?.stringValue, (16...64).contains(id.utf8.count),
              let issuedAt = payload["iat"]?.intValue, let expiresAt = payload["exp"]?.intValue else { return nil }
        let names = roles.compactMap(\.stringValue), functions = audience.compactMap(\.stringValue)
        guard names.count == roles.count, functions.count == audience.count, !functions.isEmpty else { return nil }
        self.init(subject: subject, roles: names, audience: functions, method: method, target: target, body: body, id: id,
                  requestID: payload["rid"]?.stringValue, issuedAt: issuedAt, expiresAt: expiresAt)
    }
}

/// The headers of the gateway's hand-over. Functions take the caller only from a verified
/// assertion (into ``SluiceRequestContext/caller``); `X-Sluice-Subject` and `X-Sluice-Roles`
/// are names no Sluice component writes any more, removed from every request so that nothing
/// downstream can mistake a client's for the gateway's.
public enum CallerHeaders {
    public static let assertion = HTTPField.Name("X-Sluice-Assertion")!
    public static let subject = HTTPField.Name("X-Sluice-Subject")!
    public static let roles = HTTPField.Name("X-Sluice-Roles")!
}

/// Why an assertion was refused; the raw value is the metric label.
public enum CallerAssertionFailure: String, Error, Sendable {
    case missing
    case malformed
    case badSignature = "bad_signature"
    case expired
    case notYetValid = "not_yet_valid"
    case wrongRequest = "wrong_request"
    case wrongFunction = "wrong_function"
    case wrongBody = "wrong_body"
    case replayed
    case noKey = "no_key"
}

/// A key of the wrong form in `SLUICE_GATEWAY_SIGNING_KEY` / `SLUICE_GATEWAY_PUBLIC_KEY`.
public struct CallerKeyError: Error, CustomStringConvertible {
    public var description: String

    /// The 32 bytes of a base64 key in `variable`, made into a key by `make`.
    static func key<Key>(_ text: String, variable: String, kind: String, _ make: (Data) throws -> Key) throws(CallerKeyError) -> Key {
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32,
              let key = try? make(bytes) else {
            throw CallerKeyError(description: "\(variable) must be a 32-byte Ed25519 \(kind), base64 (`sluice keys` makes one)")
        }
        return key
    }
}

/// The gateway's half: makes assertions. Only the gateway is given the private key.
public struct CallerAssertionSigner: Sendable {
    let key: Curve25519.Signing.PrivateKey
    /// How long an assertion is valid: long enough for a slow hop, short enough that one seen
    /// on the wire is soon worthless. Verifiers refuse a longer one.
    public var lifetime: Int64 = CallerAssertionVerifier.maxLifetime

    /// A signer for the key in `SLUICE_GATEWAY_SIGNING_KEY`: the 32-byte Ed25519 seed, base64.
    public init(base64 text: String) throws(CallerKeyError) {
        key = try CallerKeyError.key(text, variable: "SLUICE_GATEWAY_SIGNING_KEY", kind: "key") {
            try Curve25519.Signing.PrivateKey(rawRepresentation: $0)
        }
    }

    /// A signer for `key`.
    public init(key: Curve25519.Signing.PrivateKey) {
        self.key = key
    }

    /// A new random key.
    public static func generate() -> CallerAssertionSigner { CallerAssertionSigner(key: .init()) }

    /// The private key as `SLUICE_GATEWAY_SIGNING_KEY` takes it.
    public var base64PrivateKey: String { key.rawRepresentation.base64EncodedString() }
    /// The public key as `SLUICE_GATEWAY_PUBLIC_KEY` takes it.
    public var base64PublicKey: String { key.publicKey.rawRepresentation.base64EncodedString() }

    /// The verifier of this signer's assertions.
    public var verifier: CallerAssertionVerifier { CallerAssertionVerifier(key: key.publicKey) }

    /// The wire form of an assertion that `subject` with `roles` sent `method target` with
    /// `body` to the function `audience`, valid from now, with a fresh id.
    public func sign(subject: String, roles: some Collection<String>, audience: [String], method: String, target: String,
                     body: CallerAssertion.Body, requestID: String?, now: Int64 = Int64(Date().timeIntervalSince1970)) -> String {
        sign(CallerAssertion(subject: subject, roles: Array(roles), audience: audience, method: method, target: target, body: body,
                             requestID: requestID, issuedAt: now, expiresAt: now + lifetime))
    }

    /// The wire form of `assertion`.
    public func sign(_ assertion: CallerAssertion) -> String {
        let signed = "\(CallerAssertion.prefix).\(Base64URL.encode(assertion.payload.serializedBytes))"
        // Ed25519 signing fails only for a broken key, which the initializers rule out.
        let signature = (try? key.signature(for: Array(signed.utf8))).map { Array($0) } ?? []
        return "\(signed).\(Base64URL.encode(signature))"
    }
}

/// A function's half: checks assertions with the gateway's public key.
public struct CallerAssertionVerifier: Sendable {
    let key: Curve25519.Signing.PublicKey
    /// The longest lifetime (`exp - iat`) accepted, in seconds.
    public static let maxLifetime: Int64 = 60
    /// Clock skew allowed between the gateway's pod and the function's, at either end of the
    /// lifetime: an assertion is accepted from `iat - skew` to `exp + skew`, 70 s in all.
    public static let skew: Int64 = 5

    /// A verifier for the key in `SLUICE_GATEWAY_PUBLIC_KEY`: the 32-byte Ed25519 public key, base64.
    public init(base64 text: String) throws(CallerKeyError) {
        key = try CallerKeyError.key(text, variable: "SLUICE_GATEWAY_PUBLIC_KEY", kind: "public key") {
            try Curve25519.Signing.PublicKey(rawRepresentation: $0)
        }
    }

    init(key: Curve25519.Signing.PublicKey) {
        self.key = key
    }

    /// The verifier the environment asks for: `SLUICE_GATEWAY_PUBLIC_KEY`, else the public half
    /// of `SLUICE_GATEWAY_SIGNING_KEY` (a process that hosts the gateway itself); `nil` when
    /// neither is set.
    public static func from(_ runtime: RuntimeConfiguration) throws(CallerKeyError) -> CallerAssertionVerifier? {
        if let text = runtime.gatewayPublicKey { return try CallerAssertionVerifier(base64: text) }
        if let text = runtime.gatewaySigningKey { return try CallerAssertionSigner(base64: text).verifier }
        return nil
    }

    /// The caller of `method target`, if `header` is a valid, current assertion of the gateway
    /// for exactly that request and for one of `functions` (the functions this process hosts).
    /// The body and the id are left to the caller to check (``CallerAssertion/Body``,
    /// ``CallerReplayGuard``): they need the body read and state kept.
    /// - Throws: ``CallerAssertionFailure`` naming the first check that failed.
    public func verify(_ header: String?, method: String, target: String, functions: Set<String>,
                       now: Int64 = Int64(Date().timeIntervalSince1970)) throws(CallerAssertionFailure) -> CallerAssertion {
        guard let header, !header.isEmpty else { throw .missing }
        let parts = header.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard header.utf8.count <= 16 << 10, parts.count == 3, String(decoding: parts[0], as: UTF8.self) == CallerAssertion.prefix,
              let payloadBytes = Base64URL.decode(parts[1]), let signature = Base64URL.decode(parts[2]) else { throw .malformed }
        let signed = header.utf8.prefix(parts[0].count + 1 + parts[1].count)
        guard key.isValidSignature(signature, for: Array(signed)) else { throw .badSignature }
        guard let payload = try? JSONParser().parse(payloadBytes), let assertion = CallerAssertion(payload: payload) else { throw .malformed }
        guard assertion.expiresAt >= assertion.issuedAt, assertion.expiresAt - assertion.issuedAt <= Self.maxLifetime else { throw .malformed }
        guard now <= assertion.expiresAt + Self.skew else { throw .expired }
        guard assertion.issuedAt <= now + Self.skew else { throw .notYetValid }
        guard assertion.method == method, assertion.target == target else { throw .wrongRequest }
        guard assertion.audience.contains(where: functions.contains) else { throw .wrongFunction }
        return assertion
    }
}
