import Foundation
import Sluice

/// The signing keys of a JSON Web Key Set document (RFC 7517 §5), indexed for choosing the key
/// of a token by its header's `kid` and `alg`.
///
/// Entries this verifier does not take (see ``JWK/init(_:)``) are left out and listed in
/// ``ignored``; one bad entry does not spoil the set. Two usable entries with the same `kid`
/// and algorithm make that `kid` ambiguous: both are left out.
public struct JWKSet: Sendable {
    /// Why a document is not a key set at all.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// What ``key(id:algorithm:)`` found for a token.
    public enum Selection: Sendable {
        /// The key to check the signature with.
        case key(JWK)
        /// No key has this `kid` (or the set is empty): the provider may have rotated; refresh.
        case unknownKeyID
        /// The token has no `kid` and the set has several keys: which one is not said.
        case keyIDRequired
        /// The `kid` names a key of another type (an RS256 token naming an EC key): refused,
        /// never tried with another key.
        case wrongAlgorithm
    }

    /// The usable keys in document order.
    public let keys: [JWK]
    /// The entries left out, with the reason.
    public let ignored: [JWK.Ignored]
    private let byKeyID: [String: [JWK]]
    private let identities: Set<JWK.Identity>

    /// The set in a JWKS document (`{"keys": [...]}`).
    ///
    /// - Throws: ``ParseError`` when the document is not JSON or has no `keys` array.
    public init(document: some Collection<UInt8>) throws(ParseError) {
        let value: JSONValue
        do { value = try JSONParser(maxDepth: 16).parse(document) } catch { throw ParseError(description: "the key set is not JSON") }
        guard case .array(let entries)? = value["keys"] else { throw ParseError(description: "the key set has no keys array") }
        var usable: [JWK] = []
        var ignored: [JWK.Ignored] = []
        for entry in entries {
            do { usable.append(try JWK(entry)) } catch { ignored.append(error) }
        }
        // A kid given to two keys of one algorithm cannot say which: neither is taken.
        var counts: [String: Int] = [:]
        for key in usable { if let id = key.keyID { counts["\(key.algorithm.rawValue) \(id)", default: 0] += 1 } }
        let ambiguous = usable.filter { key in key.keyID.map { counts["\(key.algorithm.rawValue) \($0)"]! > 1 } ?? false }
        for key in ambiguous { ignored.append(JWK.Ignored(keyID: key.keyID, reason: "another \(key.algorithm.rawValue) key has the same kid")) }
        self.init(keys: usable.filter { key in key.keyID.map { counts["\(key.algorithm.rawValue) \($0)"]! == 1 } ?? true }, ignored: ignored)
    }

    /// A set of `keys` as given.
    public init(keys: [JWK], ignored: [JWK.Ignored] = []) {
        self.keys = keys
        self.ignored = ignored
        var byKeyID: [String: [JWK]] = [:]
        for key in keys { if let id = key.keyID { byKeyID[id, default: []].append(key) } }
        self.byKeyID = byKeyID
        identities = Set(keys.map(\.identity))
    }

    /// The key for a token whose header names `id` (its `kid`, if any) and `algorithm`.
    ///
    /// A token with a `kid` gets only the key of that `kid` and algorithm. A token without one
    /// gets the set's only key, if the set has one key; with several it is refused
    /// (``Selection/keyIDRequired``), never tried against each.
    public func key(id: String?, algorithm: JWTAlgorithm) -> Selection {
        let candidates: [JWK]
        if let id {
            candidates = byKeyID[id] ?? []
        } else {
            guard keys.count <= 1 else { return .keyIDRequired }
            candidates = keys
        }
        guard !candidates.isEmpty else { return .unknownKeyID }
        return candidates.first { $0.algorithm == algorithm }.map(Selection.key) ?? .wrongAlgorithm
    }

    /// Whether the key of `identity` is still in the set.
    public func contains(_ identity: JWK.Identity) -> Bool { identities.contains(identity) }
}
