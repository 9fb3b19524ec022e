import Sluice
import SluiceRedis

/// Validates each record against its dataset (``DatasetSpec``) and its freshness, and drops
/// duplicates by the dataset's key across uploads:
///
/// - malformed → quarantined with a reason code naming the field: `missing_field`,
///   `wrong_type`, `invalid_timestamp`, `future_timestamp`; a key longer than
///   `max_event_id_bytes` (default 256 bytes of UTF-8) or holding a control character →
///   `invalid_event_id`, before the deduplication step;
/// - older than `max_age` (default 24h) by the dataset's time field → dropped as `stale`;
/// - a key seen before (by another chunk, or earlier in this one) → dropped as `duplicate`;
/// - the rest → forwarded, with each value read as its field's type (a CSV cell `"19.99"` of a
///   `number` field becomes `19.99`).
///
/// Settings are validate's `config`, with the dataset's `steps.validate` in place of any key it
/// declares. `shape` says what a record must look like: `fields` (the default: the dataset's
/// fields, types and required ones), `builtin` (DESIGN.md's event shape, ``EventShapeValidator``,
/// which the `events` dataset declares) or `rules` (only the rules; the id at `id_field`, the
/// time, when `time_field` names one, there). `rules` adds field checks (``FieldRule``) after
/// the shape.
///
/// The first-seen marks live in Redis for `dedup_ttl` (default `max_age` + 1h, so a record
/// cannot outlive its mark and be loaded twice) and record which chunk position set them, so a
/// chunk delivered again is never taken for a duplicate of itself. They are keyed by a digest of
/// the dataset's name and the key (``StreamKeys/dedup(_:)``), never by the key itself.
public struct ValidateFunction: EventFunction {
    let redis: RedisClient
    let keys: StreamKeys
    /// How long a chunk waits, in the handler, for uploads still being received that first saw
    /// some of its events, before it is retried (with the retry policy's backoff): 10 s, less
    /// when the visibility timeout is short, so that a waiting chunk is never reclaimed.
    let pendingWait: Duration
    let clock: @Sendable () -> Int64
    let plans: PerDataset<ValidationPlan>

    /// The default of `config.max_event_id_bytes`.
    public static let defaultMaxEventIDBytes = ValidationPlan.defaultMaxEventIDBytes
    /// The most `config.max_event_id_bytes` may be.
    public static let maxEventIDBytesLimit = ValidationPlan.maxEventIDBytesLimit

    /// Checks duplicates without recording first-seen marks (`POST /api/v1/process/transform`).
    public var dryRun = false

    public init(setup: PipelineSetup, clock: @escaping @Sendable () -> Int64 = PipelineClock.milliseconds) throws {
        let manifest = setup.manifest
        // The function's own settings are checked at start; each dataset's when first used.
        _ = try ValidationPlan(config: manifest.config, file: manifest.file, spec: nil)
        plans = PerDataset(datasets: setup.dependencies.datasets) { spec, _ in
            try ValidationPlan(config: spec.settings(for: "validate", base: manifest.config), file: "datasets/\(spec.name).yaml: steps.validate",
                               spec: spec)
        }
        pendingWait = min(.seconds(10), manifest.visibilityTimeout / 3)
        redis = setup.dependencies.redis
        keys = setup.dependencies.keys
        self.clock = clock
        dryRun = setup.dependencies.dryRun
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let plan = try await plans.plan(for: chunk)
        let now = clock()
        var outcomes: [Outcome?] = Array(repeating: nil, count: chunk.events.count)
        var dedupKeys: [String] = [], positions: [Int] = []
        var events = chunk.events
        for (position, event) in chunk.events.enumerated() {
            let (verdict, read) = plan.check(event.value, now: now)
            switch verdict {
            case .malformed(let reason, let field):
                outcomes[position] = .quarantine(reason: reason, event: event, field: field.isEmpty ? nil : field)
            case .stale:
                outcomes[position] = .drop(reason: "stale")
            case .valid(let eventID, _):
                if let read { events[position] = Event(read) }
                dedupKeys.append(keys.dedup(plan.dedupScope + eventID))
                positions.append(position)
            }
        }
        var first: [Bool]
        do {
            if dryRun {
                let seen = try await redis.peekSeen(keys: dedupKeys, streamKeys: keys)
                var earlier: Set<String> = []
                first = zip(dedupKeys, seen).map { key, seen in !seen && earlier.insert(key).inserted }
            } else {
                first = try await claim(dedupKeys, positions: positions, chunk: chunk, ttl: plan.dedupTTL)
            }
        } catch let error as FunctionError {
            throw error
        } catch {
            throw FunctionError.retryable("dedup_unavailable", "the deduplication store did not answer")
        }
        for (index, position) in positions.enumerated() {
            outcomes[position] = first[index] ? .forward(events[position]) : .drop(reason: "duplicate")
        }
        return outcomes.map { $0! }
    }

    /// Claims the first-seen marks; answers, per key, whether the event is new. A mark held by
    /// an upload still being received is asked again every 200 ms: that upload may yet fail
    /// (cut off, or refused further on) and take its rows with it, so an event counted as its
    /// duplicate now could end up loaded by neither. Waiting longer than `pendingWait` fails
    /// the chunk as retryable (`duplicate_pending`); after `max_attempts` it is dead-lettered,
    /// from where `sluice dlq redrive` brings it back: held, never lost.
    func claim(_ dedupKeys: [String], positions: [Int], chunk: Chunk, ttl dedupTTL: Duration) async throws -> [Bool] {
        var found = try await redis.claimFirstSeen(keys: dedupKeys, positions: positions, chunkIdentity: chunk.identity,
                                                   jobID: chunk.jobID, ttl: dedupTTL, streamKeys: keys)
        let deadline = ContinuousClock.now + pendingWait
        while true {
            let pending = found.indices.filter { found[$0] == .pending }
            guard !pending.isEmpty else { break }
            guard ContinuousClock.now < deadline else {
                throw FunctionError.retryable("duplicate_pending", "\(pending.count) events were first seen by an upload still being received")
            }
            try await Task.sleep(for: .milliseconds(200))
            let again = try await redis.claimFirstSeen(keys: pending.map { dedupKeys[$0] }, positions: pending.map { positions[$0] },
                                                       chunkIdentity: chunk.identity, jobID: chunk.jobID, ttl: dedupTTL, streamKeys: keys)
            for (index, result) in zip(pending, again) { found[index] = result }
        }
        return found.map { $0 == .first }
    }
}

#if canImport(Glibc)
import Glibc
#endif
