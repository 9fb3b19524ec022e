/// How long a function's dead-letter stream (`{sluice}:dlq:NAME`) keeps its entries: an entry
/// goes when it is older than `maxAge` or when more than `maxLength` newer ones follow it,
/// whichever comes first. Read from the manifest's `dead_letters: {max_age: 7d, max_length: 10000}`.
///
/// A dead letter is a whole chunk (up to `max_chunk_bytes`), so the stream holds at most about
/// `maxLength × max_chunk_bytes` of Redis memory; without a bound, dead letters would stay for ever.
public struct DeadLetterPolicy: Sendable, Equatable {
    /// Entries older than this are removed (by the stream trigger's maintenance, every few seconds).
    public var maxAge: Duration
    /// The most entries the stream keeps (trimmed on every append, exactly).
    public var maxLength: Int

    /// Defaults: 7 days, 10,000 entries.
    public init(maxAge: Duration = .seconds(7 * 24 * 3600), maxLength: Int = 10_000) {
        self.maxAge = maxAge
        self.maxLength = maxLength
    }
}
