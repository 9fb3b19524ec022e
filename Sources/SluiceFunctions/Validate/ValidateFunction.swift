import Sluice
import SluiceRedis

/// Validates events against the built-in shape and their freshness, and drops duplicates by
/// `metadata.event_id` across uploads:
///
/// - malformed → quarantined with the validator's reason code (`missing_field`, `wrong_type`,
///   `invalid_timestamp`, `future_timestamp`); an id that is longer than
///   `config.max_event_id_bytes` (default 256 bytes of UTF-8) or holds a control character
///   → quarantined as `invalid_event_id`, before the deduplication step (a missing or empty id
///   is `missing_field`, one that is not a string `wrong_type`);
/// - older than `config.max_age` (default 24h) → dropped as `stale`;
/// - an id seen before (by another chunk, or earlier in this one) → dropped as `duplicate`;
/// - the rest → forwarded.
///
/// `config.rules` adds field checks (``FieldRule``) after the shape. `config.shape: rules`
/// replaces the built-in shape for events of another shape: then only the rules apply, the
/// id is read from `config.id_field` and the time, when `config.time_field` names one, from
/// there (freshness is checked only then).
///
/// The first-seen marks live in Redis for `config.dedup_ttl` (default `max_age` + 1h, so an
/// event cannot outlive its mark and be loaded twice) and record which chunk position set
/// them, so a chunk delivered again is never taken for a duplicate of itself. They are keyed
/// by a digest of the id (``StreamKeys/dedup(_:)``), never by the id itself.
public struct ValidateFunction: EventFunction {
    let validator: EventShapeValidator
    let redis: RedisClient
    let keys: StreamKeys
    let dedupTTL: Duration
    /// How long a chunk waits, in the handler, for uploads still being received that first saw
    /// some of its events, before it is retried (with the retry policy's backoff): 10 s, less
    /// when the visibility timeout is short, so that a waiting chunk is never reclaimed.
    let pendingWait: Duration
    let clock: @Sendable () -> Int64
    let rules: [FieldRule]
    let customShape: CustomShape?
    /// The longest `event_id` accepted, in bytes of UTF-8 (`config.max_event_id_bytes`).
    let maxEventIDBytes: Int

    /// The default of `config.max_event_id_bytes`.
    public static let defaultMaxEventIDBytes = 256
    /// The most `config.max_event_id_bytes` may be: the warehouse's primary key index takes
    /// entries of at most about 2,700 bytes (a third of a PostgreSQL page).
    public static let maxEventIDBytesLimit = 2048

    /// `shape: rules`: the event's id and (optional) time are at these paths.
    struct CustomShape: Sendable {
        let idField: String, idPath: JSONPath
        let timeField: String?, timePath: JSONPath?

        init(idField: String, timeField: String?) {
            self.idField = idField
            idPath = JSONPath(idField)
            self.timeField = timeField
            timePath = timeField.map(JSONPath.init)
        }
    }
    /// Checks duplicates without recording first-seen marks (`POST /api/v1/process/transform`).
    public var dryRun = false

    public init(setup: PipelineSetup, clock: @escaping @Sendable () -> Int64 = PipelineClock.milliseconds) throws {
        let manifest = setup.manifest
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            try manifest.configDuration(key, default: fallback)
        }
        let maxAge = try duration("max_age", .seconds(24 * 3600))
        validator = EventShapeValidator(maxAge: maxAge, maxFutureSkew: try duration("max_future_skew", .seconds(300)))
        dedupTTL = try duration("dedup_ttl", maxAge + .seconds(3600))
        guard dedupTTL > maxAge else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.dedup_ttl",
                                message: "must be longer than config.max_age, or an old duplicate could be loaded again")
        }
        pendingWait = min(.seconds(10), manifest.visibilityTimeout / 3)
        if let value = manifest.config["max_event_id_bytes"] {
            guard let bytes = value.intValue, bytes >= 1, bytes <= Int64(Self.maxEventIDBytesLimit) else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.max_event_id_bytes",
                                message: "must be an integer from 1 to \(Self.maxEventIDBytesLimit) (the warehouse's key index holds no longer ids)")
            }
            maxEventIDBytes = Int(bytes)
        } else {
            maxEventIDBytes = Self.defaultMaxEventIDBytes
        }
        redis = setup.dependencies.redis
        rules = try FieldRule.rules(from: manifest.config, file: manifest.file)
        switch manifest.config["shape"] {
        case nil, .string("builtin")?:
            customShape = nil
        case .string("rules")?:
            guard case .string(let idField)? = manifest.config["id_field"] else {
                throw ManifestError(.missingField, file: manifest.file, key: "config.id_field", message: "is required with shape: rules")
            }
            customShape = CustomShape(idField: idField, timeField: manifest.config["time_field"]?.stringValue)
        default:
            throw ManifestError(.badValue, file: manifest.file, key: "config.shape", message: "must be builtin or rules")
        }
        keys = setup.dependencies.keys
        self.clock = clock
        dryRun = setup.dependencies.dryRun
    }


    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let now = clock()
        var outcomes: [Outcome?] = Array(repeating: nil, count: chunk.events.count)
        var dedupKeys: [String] = [], positions: [Int] = []
        for (position, event) in chunk.events.enumerated() {
            switch check(event.value, now: now) {
            case .malformed(let reason, _):
                outcomes[position] = .quarantine(reason: reason, event: event)
            case .stale:
                outcomes[position] = .drop(reason: "stale")
            case .valid(let eventID, _):
                dedupKeys.append(keys.dedup(eventID))
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
                first = try await claim(dedupKeys, positions: positions, chunk: chunk)
            }
        } catch let error as FunctionError {
            throw error
        } catch {
            throw FunctionError.retryable("dedup_unavailable", "the deduplication store did not answer")
        }
        for (index, position) in positions.enumerated() {
            outcomes[position] = first[index] ? .forward(chunk.events[position]) : .drop(reason: "duplicate")
        }
        return outcomes.map { $0! }
    }

    /// Claims the first-seen marks; answers, per key, whether the event is new. A mark held by
    /// an upload still being received is asked again every 200 ms: that upload may yet fail
    /// (cut off, or refused further on) and take its rows with it, so an event counted as its
    /// duplicate now could end up loaded by neither. Waiting longer than `pendingWait` fails
    /// the chunk as retryable (`duplicate_pending`); after `max_attempts` it is dead-lettered,
    /// from where `sluice dlq redrive` brings it back: held, never lost.
    func claim(_ dedupKeys: [String], positions: [Int], chunk: Chunk) async throws -> [Bool] {
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

    /// The shape (built-in or by rules), the event id, then the rules.
    func check(_ event: JSONValue, now: Int64) -> EventShapeValidator.Verdict {
        let verdict: EventShapeValidator.Verdict
        if let customShape {
            verdict = checkCustom(event, shape: customShape, now: now)
        } else {
            verdict = validator.check(event, nowMilliseconds: now)
        }
        switch verdict {
        case .valid(let id, _), .stale(let id):
            if !Self.isAcceptableEventID(id, maxBytes: maxEventIDBytes) {
                return .malformed(reason: "invalid_event_id", field: customShape?.idField ?? "metadata.event_id")
            }
        case .malformed:
            break
        }
        guard case .valid = verdict else { return verdict }
        for rule in rules {
            if let reason = rule.violation(in: event) { return .malformed(reason: reason, field: rule.field) }
        }
        return verdict
    }

    /// Whether `id` may name an event: at most `maxBytes` bytes of UTF-8 and no control
    /// character (U+0000–U+001F, U+007F; PostgreSQL's text refuses U+0000, which would fail the
    /// whole load chunk). Emptiness is the shape's concern (`missing_field`).
    static func isAcceptableEventID(_ id: String, maxBytes: Int) -> Bool {
        var count = 0
        for byte in id.utf8 {
            count += 1
            if count > maxBytes || byte < 0x20 || byte == 0x7F { return false }
        }
        return true
    }

    func checkCustom(_ event: JSONValue, shape: CustomShape, now: Int64) -> EventShapeValidator.Verdict {
        guard case .object = event else { return .malformed(reason: "wrong_type", field: "") }
        guard case .string(let id)? = event.value(at: shape.idPath), !id.isEmpty else {
            let value = event.value(at: shape.idPath)
            return .malformed(reason: value == nil || value == .null || value == .string("") ? "missing_field" : "wrong_type", field: shape.idField)
        }
        guard let timeField = shape.timeField, let timePath = shape.timePath else { return .valid(eventID: id, timestamp: now) }
        guard case .string(let text)? = event.value(at: timePath) else { return .malformed(reason: "missing_field", field: timeField) }
        guard let time = Timestamp.milliseconds(text) else { return .malformed(reason: "invalid_timestamp", field: timeField) }
        if time > now + validator.maxFutureSkew.milliseconds { return .malformed(reason: "future_timestamp", field: timeField) }
        if time < now - validator.maxAge.milliseconds { return .stale(eventID: id) }
        return .valid(eventID: id, timestamp: time)
    }
}

#if canImport(Glibc)
import Glibc
#endif
