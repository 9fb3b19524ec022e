/// The Redis key names of a pipeline. Every key carries the same hash tag (`{sluice}`), so
/// that the atomic forward-and-ack of a chunk touches a single Redis Cluster slot.
public struct StreamKeys: Sendable, Equatable {
    /// The hash tag without braces.
    public var hashTag: String

    /// Keys under `{hashTag}`.
    public init(hashTag: String = "sluice") {
        self.hashTag = hashTag
    }

    /// The stream named `name` in manifests (`{sluice}:stream:validate`).
    public func stream(_ name: String) -> String { "{\(hashTag)}:stream:\(name)" }
    /// The dead-letter stream of function `function`.
    public func deadLetters(_ function: String) -> String { "{\(hashTag)}:dlq:\(function)" }
    /// The first-seen mark of event id `eventID` (deduplication), named by a digest of the id
    /// (SHA-256 as unpadded base64url, ``dedupDigestLength`` characters) rather than the id
    /// itself: a key of fixed size whatever the id, and no event id in Redis's key space.
    public func dedup(_ eventID: String) -> String { "{\(hashTag)}:dedup:\(Self.dedupDigest(eventID))" }
    /// The length of the digest that ends every first-seen mark's key.
    public static let dedupDigestLength = 43

    /// The SHA-256 of the id's UTF-8 bytes as unpadded base64url (43 characters).
    public static func dedupDigest(_ eventID: String) -> String {
        let digest = SHA256.digest(eventID.utf8)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(dedupDigestLength)
        var index = 0
        while index < digest.count {
            let b0 = UInt32(digest[index])
            let b1 = index + 1 < digest.count ? UInt32(digest[index + 1]) : 0
            let b2 = index + 2 < digest.count ? UInt32(digest[index + 2]) : 0
            let group = b0 << 16 | b1 << 8 | b2
            let available = min(3, digest.count - index) + 1
            for k in 0..<available { out.append(alphabet[Int((group >> UInt32(18 - 6 * k)) & 63)]) }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
    /// The hash of live counters of job `id`.
    public func job(_ id: String) -> String { "{\(hashTag)}:job:\(id)" }
    /// The lease an ingest process holds on job `id` while its body is arriving.
    public func uploadLease(_ id: String) -> String { "{\(hashTag)}:upload:\(id)" }
    /// The stream of consent changes (the subject's pseudonym per entry): every process's
    /// consent cache forgets a subject when it appears there.
    public var consentChanges: String { "{\(hashTag)}:consent-changes" }
    /// The rate-limit bucket of a caller (by a digest of the subject). Outside the hash tag:
    /// buckets spread over a cluster's slots.
    public func rateLimit(_ subjectDigest: String) -> String { "\(hashTag):ratelimit:\(subjectDigest)" }
}
