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
    /// The first-seen mark of event id `eventID` (deduplication).
    public func dedup(_ eventID: String) -> String { "{\(hashTag)}:dedup:\(eventID)" }
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
