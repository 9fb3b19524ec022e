// swift-crypto 3 does not mark its key types Sendable; they are immutable values whose BoringSSL
// handles are only read (signing and verifying are safe from any thread).
@preconcurrency import Crypto
import Foundation
import HTTPTypes
import Sluice

/// Who the gateway found a request to come from, as it hands the request to a function: the
/// verified subject and roles, bound to the one request (method and target) and to a short
/// lifetime, signed with the gateway's Ed25519 key. Functions hold only the public half, so they
/// can check an assertion but not make one: a caller that reaches a function without passing
/// the gateway (a pod in the cluster, a port left open) has nothing a function accepts.
///
/// Wire form (header `X-Sluice-Assertion`): `sa1.<payload>.<signature>`, base64url without
/// padding; the payload is a JSON object `{"sub", "roles", "method", "target", "rid", "iat",
/// "exp"}` and the signature covers `sa1.<payload>`.
public struct CallerAssertion: Sendable, Equatable {
    /// The token's `sub`, or `anonymous` for a public route.
    public var subject: String
    /// The token's roles, sorted.
    public var roles: [String]
    /// The request's method (`GET`).
    public var method: String
    /// The request target as the function receives it: the path and query (`/api/v1/jobs?limit=5`).
    public var target: String
    /// The gateway's request id.
    public var requestID: String?
    /// Unix seconds.
    public var issuedAt: Int64
    public var expiresAt: Int64

    public init(subject: String, roles: [String], method: String, target: String, requestID: String?, issuedAt: Int64, expiresAt: Int64) {
        self.subject = subject
        self.roles = roles.sorted()
        self.method = method
        self.target = target
        self.requestID = requestID
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }

    /// The version prefix of the wire form.
    static let prefix = "sa1"

    var payload: JSONValue {
        var object: JSONObject = [
            "sub": .string(subject), "roles": .array(roles.map(JSONValue.string)),
            "method": .string(method), "target": .string(target),
            "iat": .int(issuedAt), "exp": .int(expiresAt),
        ]
        if let requestID { object["rid"] = .string(requestID) }
        return .object(object)
    }

    init?(payload: JSONValue) {
        guard let subject = payload["sub"]?.stringValue, let roles = payload["roles"]?.arrayValue,
              let method = payload["method"]?.stringValue, let target = payload["target"]?.stringValue,
              let issuedAt = payload["iat"]?.intValue, let expiresAt = payload["exp"]?.intValue else { return nil }
        let names = roles.compactMap(\.stringValue)
        guard names.count == roles.count else { return nil }
        self.init(subject: subject, roles: names, method: method, target: target,
                  requestID: payload["rid"]?.stringValue, issuedAt: issuedAt, expiresAt: expiresAt)
    }
}

/// The headers of the gateway's hand-over. Functions take the caller only from a verified
/// assertion; `X-Sluice-Subject` and `X-Sluice-Roles` are rewritten from it (and removed when
/// a request has none), so the handlers that read them see only what the gateway checked.
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
    /// on the wire is soon worthless.
    public var lifetime: Int64 = 60

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

    /// The wire form of an assertion that `subject` with `roles` sent `method target`, valid from now.
    public func sign(subject: String, roles: some Collection<String>, method: String, target: String, requestID: String?,
                     now: Int64 = Int64(Date().timeIntervalSince1970)) -> String {
        sign(CallerAssertion(subject: subject, roles: Array(roles), method: method, target: target, requestID: requestID,
                             issuedAt: now, expiresAt: now + lifetime))
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
    /// Clock skew allowed between the gateway's pod and the function's.
    public var leeway: Int64 = 30

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

    /// The caller of `method target`, if `header` is a valid assertion of the gateway for
    /// exactly that request.
    /// - Throws: ``CallerAssertionFailure`` naming the first check that failed.
    public func verify(_ header: String?, method: String, target: String,
                       now: Int64 = Int64(Date().timeIntervalSince1970)) throws(CallerAssertionFailure) -> CallerAssertion {
        guard let header, !header.isEmpty else { throw .missing }
        let parts = header.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard header.utf8.count <= 16 << 10, parts.count == 3, String(decoding: parts[0], as: UTF8.self) == CallerAssertion.prefix,
              let payloadBytes = Base64URL.decode(parts[1]), let signature = Base64URL.decode(parts[2]) else { throw .malformed }
        let signed = header.utf8.prefix(parts[0].count + 1 + parts[1].count)
        guard key.isValidSignature(signature, for: Array(signed)) else { throw .badSignature }
        guard let payload = try? JSONParser().parse(payloadBytes), let assertion = CallerAssertion(payload: payload) else { throw .malformed }
        guard now <= assertion.expiresAt + leeway else { throw .expired }
        guard assertion.issuedAt <= now + leeway else { throw .notYetValid }
        guard assertion.method == method, assertion.target == target else { throw .wrongRequest }
        return assertion
    }
}
