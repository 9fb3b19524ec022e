import Sluice

/// Lookup tables held in memory and reloaded from their source when older than `ttl`.
///
/// While a reload is due and the source does not answer, lookups fail (a retryable error for
/// the caller): enriching with data older than promised would be wrong silently.
public actor LookupCache {
    /// The tables, by name: key → value.
    public typealias Tables = [String: [String: String]]

    private let ttl: Duration
    private let load: @Sendable () async throws -> Tables
    private let now: @Sendable () -> ContinuousClock.Instant
    private var tables: Tables?
    private var loadedAt: ContinuousClock.Instant?
    private var loading: Task<Tables, any Error>?

    /// - Parameters:
    ///   - ttl: how long loaded tables are used before they are loaded again.
    ///   - load: reads every table from the source.
    ///   - now: the clock (inject one to test expiry).
    public init(ttl: Duration, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
                load: @escaping @Sendable () async throws -> Tables) {
        self.ttl = ttl
        self.load = load
        self.now = now
    }

    /// The current tables, loading them first when there are none or they expired.
    /// Concurrent callers share one load.
    public func current() async throws -> Tables {
        if let tables, let loadedAt, now() - loadedAt < ttl { return tables }
        if let loading { return try await loading.value }
        let task = Task { try await load() }
        loading = task
        defer { loading = nil }
        let fresh = try await task.value
        tables = fresh
        loadedAt = now()
        return fresh
    }
}
