// swift-crypto 3 does not mark its key types Sendable; they are immutable values whose BoringSSL
// handles are only read (signing and verifying are safe from any thread).
@preconcurrency import Crypto
import Foundation
import Sluice
@preconcurrency import _CryptoExtras

/// One public key from a JSON Web Key Set (RFC 7517) that can check a JWS signature: an RSA
/// key (`kty` `RSA`, `n`/`e`, at least 2048 bits) for RS256 or a P-256 key (`kty` `EC`,
/// `crv` `P-256`, `x`/`y`) for ES256. Signatures are checked with swift-crypto (BoringSSL).
public struct JWK: Sendable {
    /// Identifies a key's material: equal for the same `kid`, algorithm and public numbers. A
    /// verified token remembers the identity of the key that verified it, so that it stops
    /// passing once that key leaves the set (or its `kid` is reused for other numbers).
    public struct Identity: Hashable, Sendable {
        let digest: [UInt8]
    }

    /// Why an entry of a key set was not taken. `keyID` and `reason` are public information
    /// (a key set is a public document) and are logged.
    public struct Ignored: Error, Sendable, Equatable, CustomStringConvertible {
        public var keyID: String?
        public var reason: String

        public var description: String { "\(keyID.map { "kid \($0)" } ?? "a key without kid"): \(reason)" }
    }

    enum Material: @unchecked Sendable {
        // swift-crypto's public keys are immutable values, but `P256.Signing.PublicKey` is
        // not marked Sendable in 3.12.
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
    }

    /// The RSA keys taken: from 2048 bits (RFC 7518 §3.3) to 8192 (a bound on what one
    /// verification may cost; providers use 2048 to 4096).
    static let rsaBits = 2048...8192

    /// The `kid`, when the entry has one.
    public let keyID: String?
    /// RS256 for an RSA key, ES256 for a P-256 key.
    public let algorithm: JWTAlgorithm
    public let identity: Identity
    let material: Material

    /// The key one entry of a set's `keys` array describes.
    ///
    /// - Throws: ``Ignored`` when the entry is not a signing key this verifier takes: `use`
    ///   other than `sig`, `key_ops` without `verify`, an `alg` other than RS256/ES256 or not
    ///   the one its `kty` makes, another `kty` or curve, numbers that are missing, not
    ///   base64url or not a valid key.
    public init(_ entry: JSONValue) throws(Ignored) {
        guard case .object(let object) = entry else { throw Ignored(keyID: nil, reason: "not a JSON object") }
        var keyID: String?
        if let kid = object["kid"] {
            guard let text = kid.stringValue else { throw Ignored(keyID: nil, reason: "kid is not a string") }
            keyID = text
        }
        func ignore(_ reason: String) -> Ignored { Ignored(keyID: keyID, reason: reason) }
        if let use = object["use"], use.stringValue != "sig" { throw ignore("use is not sig") }
        if let operations = object["key_ops"] {
            guard case .array(let values) = operations, values.contains(.string("verify")) else { throw ignore("key_ops has no verify") }
        }
        var declared: JWTAlgorithm?
        if let alg = object["alg"] {
            guard let name = alg.stringValue, let algorithm = JWTAlgorithm(rawValue: name), algorithm != .hs256 else {
                throw ignore("alg \(alg.stringValue ?? "?") is not RS256 or ES256")
            }
            declared = algorithm
        }
        func bytes(_ name: String) throws(Ignored) -> [UInt8] {
            guard let text = object[name]?.stringValue, !text.isEmpty, text.utf8.allSatisfy(Base64URL.isAlphabet),
                  let decoded = Base64URL.decode(text.utf8), !decoded.isEmpty else {
                throw ignore("\(name) is missing or not base64url")
            }
            return decoded
        }
        switch object["kty"]?.stringValue {
        case "RSA":
            guard declared == nil || declared == .rs256 else { throw ignore("alg ES256 on an RSA key") }
            var modulus = try bytes("n")
            let exponent = try bytes("e")
            while modulus.count > 1, modulus[0] == 0 { modulus.removeFirst() }
            let bits = (modulus.count - 1) * 8 + (8 - modulus[0].leadingZeroBitCount)
            guard Self.rsaBits.contains(bits) else { throw ignore("an RSA key of \(bits) bits (\(Self.rsaBits.lowerBound) to \(Self.rsaBits.upperBound) are taken)") }
            guard exponent.count <= 4 else { throw ignore("e is larger than 32 bits") }
            let key: _RSA.Signing.PublicKey
            do { key = try _RSA.Signing.PublicKey(n: modulus, e: exponent) } catch { throw ignore("n/e are not an RSA public key") }
            algorithm = .rs256
            material = .rsa(key)
            identity = Self.identity(keyID: keyID, algorithm: .rs256, numbers: [modulus, exponent])
        case "EC":
            guard declared == nil || declared == .es256 else { throw ignore("alg RS256 on an EC key") }
            guard object["crv"]?.stringValue == "P-256" else { throw ignore("crv \(object["crv"]?.stringValue ?? "?") is not P-256") }
            let x = try bytes("x"), y = try bytes("y")
            guard x.count == 32, y.count == 32 else { throw ignore("x/y are not 32 bytes each") }
            let key: P256.Signing.PublicKey
            do { key = try P256.Signing.PublicKey(rawRepresentation: x + y) } catch { throw ignore("x/y are not a point on P-256") }
            algorithm = .es256
            material = .p256(key)
            identity = Self.identity(keyID: keyID, algorithm: .es256, numbers: [x, y])
        case let other:
            throw ignore("kty \(other ?? "?") is not RSA or EC")
        }
        self.keyID = keyID
    }

    private static func identity(keyID: String?, algorithm: JWTAlgorithm, numbers: [[UInt8]]) -> Identity {
        var input = Array((keyID ?? "").utf8) + [0] + Array(algorithm.rawValue.utf8)
        for number in numbers { input += [0] + withUnsafeBytes(of: UInt32(number.count).bigEndian, Array.init) + number }
        return Identity(digest: Array(Crypto.SHA256.hash(data: input)))
    }

    /// Whether `signature` (the JWS signature bytes: PKCS #1 v1.5 for RS256, R‖S for ES256) is
    /// this key's signature of `signingInput` (the token's `header.payload` text).
    public func isValidSignature(_ signature: [UInt8], for signingInput: some DataProtocol) -> Bool {
        switch material {
        case .rsa(let key):
            guard signature.count == (key.keySizeInBits + 7) / 8 else { return false }
            return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: signingInput, padding: .insecurePKCS1v1_5)
        case .p256(let key):
            guard signature.count == 64, let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(ecdsa, for: signingInput)
        }
    }
}
