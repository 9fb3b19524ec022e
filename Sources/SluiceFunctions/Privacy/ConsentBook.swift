import CoreMetrics
import Logging
import ServiceLifecycle
import Sluice
import SluicePostgres
import SluicePrivacy
import SluiceRedis
import Synchronization

/// The consents of subjects, read from PostgreSQL (`consents`) and cached in memory, one book
/// per process.
///
/// The cache is kept right by a listener, not by a time-to-live: every change of a consent is
/// announced on the Redis stream `{sluice}:consent-changes` after it commits, and the listener
/// of every process (an `XREAD BLOCK` on that stream) forgets the subject at once, so that a
/// withdrawal reaches every running process in milliseconds. The book caches only while its
/// listener is following the stream: before it has started, while Redis is unreachable, or in a
/// process that does not run it (`sluice invoke`), every lookup reads PostgreSQL.
///
/// A lookup that started before an announcement may have read the old value; it answers its
/// own caller but is not cached (a generation counter tells).
public final class ConsentBook: Sendable {
    let pool: PostgresPool
    let redis: RedisClient
    let keys: StreamKeys
    let logger: Logger
    let capacity: Int
    /// Entries older than this are read again: a safety net for an announcement lost between a
    /// commit and its `XADD`, not the way changes arrive.
    let maxAge: Duration

    private struct State {
        var entries: [String: (records: [ConsentRecord], at: ContinuousClock.Instant)] = [:]
        /// Bumped by every announcement and by every loss of the stream.
        var generation: UInt64 = 0
        /// Whether the listener is following the stream, so cached entries can be trusted.
        var following = false
    }
    private let state = Mutex(State())
    /// `sluice_consent_lookups_total{source}`: subjects answered from memory and from PostgreSQL.
    let cacheLookups = Counter(label: "sluice_consent_lookups_total", dimensions: [("source", "cache")])
    let databaseLookups = Counter(label: "sluice_consent_lookups_total", dimensions: [("source", "database")])

    public init(pool: PostgresPool, redis: RedisClient, keys: StreamKeys, logger: Logger,
                capacity: Int = 200_000, maxAge: Duration = .seconds(300)) {
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.logger = logger
        self.capacity = capacity
        self.maxAge = maxAge
    }

    /// The recorded consents of each subject (every purpose; an empty list for a subject with
    /// none). One query for all the subjects not cached.
    /// - Throws: ``FunctionError`` (retryable, `consents_unavailable`) when PostgreSQL cannot answer.
    public func records(of subjects: Set<String>) async throws -> [String: [ConsentRecord]] {
        let now = ContinuousClock.now
        var found: [String: [ConsentRecord]] = [:]
        var missing: [String] = []
        let generation: UInt64 = state.withLock { state in
            for subject in subjects {
                if state.following, let entry = state.entries[subject], now - entry.at < maxAge {
                    found[subject] = entry.records
                } else {
                    missing.append(subject)
                }
            }
            return state.generation
        }
        if !found.isEmpty { cacheLookups.increment(by: found.count) }
        guard !missing.isEmpty else { return found }
        databaseLookups.increment(by: missing.count)
        let rows: PostgresRows
        do {
            rows = try await pool.query("""
                SELECT subject, purpose, granted, (extract(epoch FROM updated_at) * 1000000)::bigint
                FROM consents WHERE subject = ANY(\(missing)::text[])
                """)
        } catch {
            throw FunctionError.retryable("consents_unavailable", "the consents cannot be read: \(type(of: error))")
        }
        var read: [String: [ConsentRecord]] = [:]
        for subject in missing { read[subject] = [] }
        let records: [(String, String, Bool, Int64)]
        do {
            records = try rows.decode((String, String, Bool, Int64).self)
        } catch {
            throw FunctionError.retryable("consents_unavailable", "the consents cannot be read: \(error.code.rawValue)")
        }
        for (subject, purpose, granted, at) in records {
            read[subject, default: []].append(ConsentRecord(purpose: purpose, granted: granted, recordedAt: at))
        }
        state.withLock { state in
            guard state.following, state.generation == generation else { return }
            if state.entries.count + read.count > capacity { state.entries.removeAll(keepingCapacity: true) }
            for (subject, records) in read { state.entries[subject] = (records, now) }
        }
        found.merge(read) { $1 }
        return found
    }

    /// Announces that `subject`'s consents changed (call after the change committed): every
    /// book's listener forgets the subject.
    public static func announce(_ subject: String, redis: RedisClient, keys: StreamKeys) async throws {
        try await redis.add(stream: keys.consentChanges, maxLength: 10_000, fields: [("subject", Array(subject.utf8))])
    }

    /// Forgets `subject` (what the listener does for each announcement).
    func forget(_ subject: String) {
        state.withLock { state in
            state.generation &+= 1
            state.entries[subject] = nil
        }
    }

    /// Starts or stops trusting the cache; stopping empties it.
    func setFollowing(_ following: Bool) {
        state.withLock { state in
            if !following {
                state.entries.removeAll()
                state.generation &+= 1
            }
            state.following = following
        }
    }

    /// Whether the listener is following the stream (so lookups may be answered from memory).
    public var isFollowing: Bool { state.withLock { $0.following } }

    /// How many subjects are cached (for tests and metrics).
    public var cachedSubjects: Int { state.withLock { $0.entries.count } }

    /// The listener: follows `{sluice}:consent-changes` until the process drains.
    public var listener: any Service { Listener(book: self) }

    struct Listener: Service {
        let book: ConsentBook

        func run() async throws {
            let stopping = StopFlag()
            await withGracefulShutdownHandler {
                var warned = false
                while !Task.isCancelled && !stopping.isSet {
                    do {
                        // Everything announced before this position is already in PostgreSQL,
                        // and the cache is empty: following from here misses nothing.
                        var last = try await book.redis.lastEntryID(stream: book.keys.consentChanges)
                        book.setFollowing(true)
                        warned = false
                        while !Task.isCancelled && !stopping.isSet {
                            for entry in try await book.redis.read(stream: book.keys.consentChanges, after: last, count: 1000, block: .seconds(1)) {
                                if let subject = entry.field("subject") { book.forget(subject) }
                                last = entry.id
                            }
                        }
                    } catch {
                        book.setFollowing(false)
                        if Task.isCancelled || stopping.isSet { break }
                        if !warned {
                            book.logger.warning("consent changes cannot be followed; consents are read from PostgreSQL for every chunk until Redis is back",
                                                metadata: ["error": .string("\(type(of: error))")])
                        }
                        warned = true
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
                book.setFollowing(false)
            } onGracefulShutdown: {
                stopping.set()
            }
        }
    }
}
