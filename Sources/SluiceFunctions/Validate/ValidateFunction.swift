import Sluice
import SluiceRedis

/// Validates events against the built-in shape and their freshness, and drops duplicates by
/// `metadata.event_id` across uploads:
///
/// - malformed → quarantined with the validator's reason code (`missing_field`, `wrong_type`,
///   `invalid_timestamp`, `future_timestamp`);
/// - older than `config.max_age` (default 24h) → dropped as `stale`;
/// - an id seen before (by another chunk, or earlier in this one) → dropped as `duplicate`;
/// - the rest → forwarded.
///
/// The first-seen marks live in Redis for `config.dedup_ttl` (default `max_age` + 1h, so an
/// event cannot outlive its mark and be loaded twice) and record which chunk position set
/// them, so a chunk delivered again is never taken for a duplicate of itself.
public struct ValidateFunction: EventFunction {
    let validator: EventShapeValidator
    let redis: RedisClient
    let keys: StreamKeys
    let dedupTTL: Duration
    let clock: @Sendable () -> Int64

    public init(setup: FunctionSetup, clock: @escaping @Sendable () -> Int64 = ValidateFunction.systemMilliseconds) throws {
        let manifest = setup.manifest
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let value = manifest.config[key] else { return fallback }
            guard let text = value.stringValue, let parsed = DurationParser.parse(text) else {
                throw ManifestError(.badDuration, file: manifest.file, key: "config.\(key)", message: "is not a duration (write e.g. 24h)")
            }
            return parsed
        }
        let maxAge = try duration("max_age", .seconds(24 * 3600))
        validator = EventShapeValidator(maxAge: maxAge, maxFutureSkew: try duration("max_future_skew", .seconds(300)))
        dedupTTL = try duration("dedup_ttl", maxAge + .seconds(3600))
        guard dedupTTL > maxAge else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.dedup_ttl",
                                message: "must be longer than config.max_age, or an old duplicate could be loaded again")
        }
        redis = try setup.resources.require(RedisClient.self)
        keys = setup.resources.get(StreamKeys.self) ?? StreamKeys()
        self.clock = clock
    }

    /// The wall clock in Unix milliseconds.
    public static func systemMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let now = clock()
        var outcomes: [Outcome?] = Array(repeating: nil, count: chunk.events.count)
        var dedupKeys: [String] = [], positions: [Int] = []
        for (position, event) in chunk.events.enumerated() {
            switch validator.check(event.value, nowMilliseconds: now) {
            case .malformed(let reason, _):
                outcomes[position] = .quarantine(reason: reason, event: event)
            case .stale:
                outcomes[position] = .drop(reason: "stale")
            case .valid(let eventID, _):
                dedupKeys.append(keys.dedup(eventID))
                positions.append(position)
            }
        }
        let first: [Bool]
        do {
            first = try await redis.claimFirstSeen(keys: dedupKeys, positions: positions, chunkIdentity: chunk.identity, ttl: dedupTTL)
        } catch {
            throw FunctionError.retryable("dedup_unavailable", "the deduplication store did not answer")
        }
        for (index, position) in positions.enumerated() {
            outcomes[position] = first[index] ? .forward(chunk.events[position]) : .drop(reason: "duplicate")
        }
        return outcomes.map { $0! }
    }
}

#if canImport(Glibc)
import Glibc
#endif
