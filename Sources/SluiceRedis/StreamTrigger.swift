import Foundation
import Logging
import ServiceLifecycle
import Sluice
import Synchronization

/// Runs an event function on the chunks of its input stream, with the delivery guarantees of
/// DESIGN.md: one consumer group per function, forward-and-ack in one atomic step, reclaim of
/// chunks a dead consumer left pending, retries with backoff, then the dead-letter stream.
///
/// At most `concurrency` chunks (`concurrency × batch` events, each chunk at most the writer's
/// `max_chunk_bytes`) are in flight: every worker reads one entry at a time. On graceful
/// shutdown (SIGTERM) it stops reading, finishes and acknowledges the chunks in flight, and
/// returns; a chunk waiting for a retry stays pending and is reclaimed by another consumer.
public final class StreamTrigger: Service, CustomStringConvertible {
    /// Tunables that are not in the manifest.
    public struct Configuration: Sendable {
        /// Key names.
        public var keys: StreamKeys
        /// This process's consumer name (unique per process).
        public var consumerName: String
        /// How long one `XREADGROUP` waits for new entries.
        public var blockTime: Duration
        /// How often the group's lag is measured and acknowledged entries trimmed.
        public var maintenanceInterval: Duration

        public init(keys: StreamKeys = StreamKeys(), consumerName: String = StreamTrigger.uniqueConsumerName(),
                    blockTime: Duration = .seconds(1), maintenanceInterval: Duration = .seconds(5)) {
            self.keys = keys
            self.consumerName = consumerName
            self.blockTime = blockTime
            self.maintenanceInterval = maintenanceInterval
        }
    }

    let invoker: FunctionInvoker
    let redis: RedisClient
    /// Where forwarded events go, per chunk (nil: the manifest's outputs).
    let router: (any ChunkRouting)?
    let configuration: Configuration
    let logger: Logger
    let metrics: FunctionMetrics
    let inputStream: String
    let stopping = Atomic<Bool>(false)

    var manifest: Manifest { invoker.manifest }
    public var description: String { "StreamTrigger(\(manifest.name), stream: \(inputStream))" }
    var group: String { manifest.name }
    var consumer: String { configuration.consumerName }

    /// Creates the trigger for `invoker`'s function, which must have a stream trigger.
    /// - Parameter router: where forwarded events go, per chunk (the next function of the chunk's
    ///   dataset chain); nil: the manifest's `outputs`.
    public init(invoker: FunctionInvoker, redis: RedisClient, router: (any ChunkRouting)? = nil, configuration: Configuration, logger: Logger) {
        self.invoker = invoker
        self.redis = redis
        self.router = router
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "function"] = .string(invoker.manifest.name)
        self.logger = logger
        self.metrics = FunctionMetrics(function: invoker.manifest.name)
        self.inputStream = configuration.keys.stream(invoker.manifest.inputStream ?? invoker.manifest.name)
    }

    /// `HOSTNAME-PID-RANDOM`: unique per process, so a restarted process never inherits the
    /// pending entries of its previous life except through `XAUTOCLAIM`.
    public static func uniqueConsumerName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host = gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: ".").first.map(String.init) ?? "host"
            : "host"
        return "\(host)-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for worker in 0..<manifest.concurrency {
                    group.addTask { await self.work(worker) }
                }
                group.addTask { await self.maintain() }
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
        }
        logger.info("stream trigger stopped", metadata: ["stream": .string(inputStream)])
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) || Task.isCancelled }

    // MARK: - Reading

    func work(_ worker: Int) async {
        var outage = Backoff()
        var groupReady = false
        var nextReclaim = ContinuousClock.now
        let reclaimEvery = max(manifest.visibilityTimeout / 4, .milliseconds(50))
        while !isStopping {
            do {
                if !groupReady {
                    try await redis.ensureGroup(stream: inputStream, group: group)
                    groupReady = true
                }
                if ContinuousClock.now >= nextReclaim {
                    nextReclaim = .now + reclaimEvery
                    let claimed = try await redis.autoClaim(stream: inputStream, group: group, consumer: consumer,
                                                            minIdle: manifest.visibilityTimeout, count: 1)
                    if let entry = claimed.first {
                        nextReclaim = .now  // more may be waiting
                        let attempt = try await redis.deliveryCount(stream: inputStream, group: group, id: entry.id) ?? 2
                        logger.warning("reclaimed a chunk left pending", metadata: ["chunk": .string(entry.id), "attempt": .stringConvertible(attempt)])
                        await process(entry, attempt: attempt)
                        outage.reset(logger: logger)
                        continue
                    }
                }
                let entries = try await redis.readGroup(stream: inputStream, group: group, consumer: consumer,
                                                        count: 1, block: configuration.blockTime)
                outage.reset(logger: logger)
                for entry in entries { await process(entry, attempt: 1) }
            } catch let error as RedisError where error.code == .command && error.message.hasPrefix("NOGROUP") {
                groupReady = false  // the server lost the group (restarted without persistence)
            } catch {
                await outage.wait(after: error, logger: logger, isStopping: { self.isStopping })
                groupReady = false
            }
        }
    }

    // MARK: - Processing

    func process(_ entry: StreamEntry, attempt firstAttempt: Int) async {
        let chunk: Chunk
        do {
            chunk = try ChunkCodec.decode(id: entry.id, fields: entry.fields)
        } catch {
            await deadLetter(entry, jobID: entry.field("job"), events: Int(entry.field("n") ?? "") ?? 0,
                             error: .permanent(error.code, error.message), attempts: firstAttempt)
            return
        }
        var attempt = firstAttempt
        var current = entry
        while true {
            if attempt > manifest.retry.maxAttempts {
                await deadLetter(current, chunk: chunk, jobID: chunk.jobID, events: chunk.events.count,
                                 error: .permanent("max_attempts_exceeded",
                                                   "delivered \(attempt - 1) times without being acknowledged (the handler crashed or timed out)"),
                                 attempts: attempt - 1)
                return
            }
            let started = ContinuousClock.now
            do {
                let outcomes = try await invoker.invoke(chunk, attempt: attempt)
                metrics.recordInvocation(viaStream: true, duration: .now - started, outcomes: outcomes)
                let routes = try await routes(for: chunk, outcomes: outcomes)
                await acknowledge(current, chunk: chunk, outcomes: outcomes, routes: routes)
                return
            } catch {
                metrics.recordInvocation(viaStream: true, duration: .now - started, outcomes: [])
                let retry = error.kind == .retryable && manifest.retry.shouldRetry(afterAttempt: attempt)
                logger.warning("chunk failed", metadata: [
                    "chunk": .string(chunk.id), "attempt": .stringConvertible(attempt),
                    "error": .string(error.code), "retry": .stringConvertible(retry),
                ])
                guard retry else {
                    await deadLetter(current, chunk: chunk, jobID: chunk.jobID, events: chunk.events.count, error: error, attempts: attempt)
                    return
                }
                metrics.recordRetry()
                let delay = manifest.retry.backoff(beforeAttempt: attempt + 1, unitRandom: Double.random(in: 0..<1))
                guard await holdWhileWaiting(entryID: current.id, delay: delay) else { return }
                do {
                    guard let claimed = try await redis.claim(stream: inputStream, group: group, consumer: consumer, id: current.id) else {
                        return  // acknowledged or deleted meanwhile
                    }
                    current = claimed
                } catch {
                    return  // Redis is away: the entry stays pending and is reclaimed later
                }
                attempt += 1
            }
        }
    }

    /// Waits `delay` before a retry, resetting the entry's idle time meanwhile so that no other
    /// consumer reclaims it. Answers `false` when shutting down (the entry stays pending).
    func holdWhileWaiting(entryID: String, delay: Duration) async -> Bool {
        let until = ContinuousClock.now + delay
        let step = max(manifest.visibilityTimeout / 3, .milliseconds(20))
        while ContinuousClock.now < until {
            if isStopping { return false }
            try? await Task.sleep(for: min(step, until - .now, .milliseconds(200)))
            try? await redis.touch(stream: inputStream, group: group, consumer: consumer, ids: [entryID])
        }
        return !isStopping
    }

    /// Where the chunk's forwarded events go when the function named no output: asked of the
    /// router only when there are such events.
    func routes(for chunk: Chunk, outcomes: [Outcome]) async throws(FunctionError) -> [String]? {
        guard let router, outcomes.contains(where: {
            switch $0 {
            case .forward(_, nil), .fanOut(_, nil): true
            default: false
            }
        }) else { return nil }
        return try await router.outputs(after: manifest.name, for: chunk)
    }

    func acknowledge(_ entry: StreamEntry, chunk: Chunk, outcomes: [Outcome], routes: [String]? = nil) async {
        let plan = AcknowledgementPlan(manifest: manifest, chunk: chunk, outcomes: outcomes, keys: configuration.keys, routes: routes)
        var outage = Backoff()
        var metadata: Logger.Metadata = ["chunk": .string(entry.id)]
        if let job = chunk.jobID { metadata["job"] = .string(job) }
        if let trace = chunk.traceID { metadata["trace"] = .string(trace) }
        // Keep trying while Redis is away: the outputs exist only in memory until this succeeds.
        // If the process dies meanwhile, the entry is still pending and will be reclaimed.
        while true {
            do {
                let result = try await redis.acknowledge(
                    stream: inputStream, group: group, id: entry.id, appends: plan.appends,
                    counterKey: plan.counterKey, counters: plan.counters,
                    events: chunk.events.count, honourJobState: plan.honourJobState,
                    jobEvents: configuration.keys.stream("jobs"))
                switch result {
                case .alreadyAcknowledged:
                    logger.notice("chunk was acknowledged by another consumer; this result is discarded", metadata: metadata)
                case .droppedForJob:
                    logger.info("chunk of a cancelled or failed job dropped", metadata: metadata)
                case .written:
                    // One line per chunk and stage: with `trace` an upload can be followed through every stage.
                    metadata["events"] = .stringConvertible(chunk.events.count)
                    logger.debug("chunk acknowledged", metadata: metadata)
                }
                return
            } catch let error as RedisError where error.code == .unavailable {
                if Task.isCancelled { return }
                await outage.wait(after: error, logger: logger, isStopping: { Task.isCancelled })
            } catch {
                logger.error("acknowledging a chunk failed", metadata: ["chunk": .string(entry.id), "error": .string("\(error)")])
                return
            }
        }
    }

    /// The fields a dead letter keeps of `entry` (whose chunk is `chunk`, `nil` when it could not
    /// be decoded). A function that declares `pii-mask` keeps its chunk masked (re-encoded as a
    /// chunk of events, so it can be redriven), and of a chunk it could not decode only the
    /// header fields, with `payload: withheld`: the raw events are never stored.
    func keptFields(of entry: StreamEntry, chunk: Chunk?) async -> [(String, [UInt8])] {
        guard let mask = invoker.storedEventMask else { return entry.fields }
        if let chunk { return ChunkCodec.encode(await mask.masked(chunk)) }
        let header: Set<String> = ["v", "n", "job", "trace", "origin", "received", "dataset"]
        return entry.fields.filter { header.contains($0.0) } + [("payload", Array("withheld".utf8))]
    }

    func deadLetter(_ entry: StreamEntry, chunk: Chunk? = nil, jobID: String?, events: Int, error: FunctionError, attempts: Int) async {
        var fields = await keptFields(of: entry, chunk: chunk)
            .filter { !["error", "error_code", "error_kind", "attempts", "function", "source_id", "failed_at"].contains($0.0) }
        fields.append(("function", Array(manifest.name.utf8)))
        fields.append(("source_id", Array(entry.id.utf8)))
        fields.append(("error_code", Array(error.code.utf8)))
        fields.append(("error_kind", Array(error.kind.rawValue.utf8)))
        fields.append(("error", Array(error.message.utf8)))
        fields.append(("attempts", Array(String(attempts).utf8)))
        fields.append(("failed_at", Array(String(Int64(Date().timeIntervalSince1970 * 1000)).utf8)))
        let counterKey = configuration.keys.job(jobID ?? "-")
        let counters: [(String, Int)] = jobID == nil ? [] : [("dead_lettered", events), ("fn.\(manifest.name).dead_lettered", events)]
        var outage = Backoff()
        while true {
            do {
                let result = try await redis.acknowledge(
                    stream: inputStream, group: group, id: entry.id,
                    appends: [.init(stream: configuration.keys.deadLetters(manifest.name), fields: fields,
                                    maxLength: manifest.deadLetters.maxLength)],
                    counterKey: counterKey, counters: counters, events: events, honourJobState: jobID != nil,
                    jobEvents: configuration.keys.stream("jobs"))
                if result == .written {
                    metrics.recordDeadLetter()
                    logger.error("chunk dead-lettered", metadata: [
                        "chunk": .string(entry.id), "error": .string(error.code), "attempts": .stringConvertible(attempts),
                    ])
                }
                return
            } catch let error as RedisError where error.code == .unavailable {
                if Task.isCancelled { return }
                await outage.wait(after: error, logger: logger, isStopping: { Task.isCancelled })
            } catch {
                logger.error("dead-lettering a chunk failed", metadata: ["chunk": .string(entry.id)])
                return
            }
        }
    }

    // MARK: - Maintenance

    func maintain() async {
        while !isStopping {
            do {
                if let state = try await redis.groupState(stream: inputStream, group: group) {
                    metrics.recordStreamState(lag: state.lag, pending: state.pending)
                }
                try await redis.trimAcknowledged(stream: inputStream)
                // Dead letters go after `dead_letters.max_age` (and beyond `max_length`, which
                // each append enforces too, in case the policy was lowered).
                try await redis.trim(stream: configuration.keys.deadLetters(manifest.name), maxLength: manifest.deadLetters.maxLength,
                                     maxAge: manifest.deadLetters.maxAge)
            } catch {
                logger.debug("stream maintenance skipped", metadata: ["error": .string("\(error)")])
            }
            let until = ContinuousClock.now + configuration.maintenanceInterval
            while !isStopping, ContinuousClock.now < until {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}

/// What one chunk's outcomes write on acknowledgement: an entry per output that receives
/// events, one quarantine entry, and the job's counters.
struct AcknowledgementPlan {
    var appends: [RedisClient.Append] = []
    var counters: [(String, Int)] = []
    var counterKey: String
    /// Whether a chunk of a cancelled or failed job is dropped instead (not for the function
    /// that records quarantined events: those are kept whatever became of their job).
    var honourJobState: Bool

    /// - Parameter routes: the streams events forwarded without a named output go to (the next
    ///   function of the chunk's dataset chain); nil: the manifest's `outputs`.
    init(manifest: Manifest, chunk: Chunk, outcomes: [Outcome], keys: StreamKeys, routes: [String]? = nil) {
        counterKey = keys.job(chunk.jobID ?? "-")
        honourJobState = chunk.jobID != nil && manifest.countsAs != "quarantined"
        var forwarded: [String: [Event]] = [:]
        var quarantined: [Event] = []
        var dropped: [String: Int] = [:]
        var quarantineReasons: [String: Int] = [:]
        var forwardedCount = 0
        // Events a fan-out added (each one forwarded in place of several): the job waits for them too.
        var added = 0
        let targets = routes ?? manifest.outputs
        var fannedOut = 0
        for (index, outcome) in outcomes.enumerated() {
            switch outcome {
            case .fanOut(let events, _) where events.count > manifest.maxFanOutPerEvent
                || (events.count > 1 && fannedOut + events.count > manifest.maxFanOutPerChunk):
                // One event made more than a function may make of it (or the chunk's fan-outs
                // add up past their limit): the event as it came is quarantined, none written.
                quarantineReasons["fan_out_too_large", default: 0] += 1
                let original = index < chunk.events.count ? chunk.events[index].value : JSONValue.null
                quarantined.append(Event(["reason": "fan_out_too_large", "function": .string(manifest.name), "event": original]))
            case .forward(let event, let output):
                forwardedCount += 1
                for name in output.map({ [$0] }) ?? targets { forwarded[name, default: []].append(event) }
            case .fanOut(let events, _) where events.isEmpty:
                // Nothing to pass on (the protocol refuses it; a Swift handler might not).
                dropped["fan_out_empty", default: 0] += 1
            case .fanOut(let events, let output):
                forwardedCount += events.count
                added += events.count - 1
                if events.count > 1 { fannedOut += events.count }
                for name in output.map({ [$0] }) ?? targets { forwarded[name, default: []].append(contentsOf: events) }
            case .drop(let reason):
                dropped[reason, default: 0] += 1
            case .quarantine(let reason, let event, let field):
                quarantineReasons[reason, default: 0] += 1
                var item: JSONObject = ["reason": .string(reason), "function": .string(manifest.name), "event": event.value]
                if let field { item["field"] = .string(field) }
                quarantined.append(Event(.object(item)))
            }
        }
        // One entry per output, unless the function made the events larger than a chunk may be
        // (masking, enrichment): then as many as keep each within max_chunk_bytes, all written
        // by the same atomic acknowledgement.
        for name in targets + manifest.outputs.filter({ !targets.contains($0) }) {
            guard let events = forwarded[name], !events.isEmpty else { continue }
            for fields in ChunkCodec.encode(events: events, maxBytes: manifest.maxChunkBytes, jobID: chunk.jobID, traceID: chunk.traceID,
                                            receivedAt: chunk.receivedAt, dataset: chunk.dataset) {
                appends.append(.init(stream: keys.stream(name), fields: fields))
            }
        }
        if !quarantined.isEmpty {
            for fields in ChunkCodec.encode(events: quarantined, maxBytes: manifest.maxChunkBytes, jobID: chunk.jobID, traceID: chunk.traceID,
                                            receivedAt: chunk.receivedAt, dataset: chunk.dataset) {
                appends.append(.init(stream: keys.stream("quarantine"), fields: fields))
            }
        }
        guard chunk.jobID != nil else { return }
        counters.append(("fn.\(manifest.name).in", chunk.events.count))
        counters.append(("fn.\(manifest.name).forwarded", forwardedCount))
        if added != 0 { counters.append(("added", added)) }
        for (reason, count) in dropped.sorted(by: { $0.key < $1.key }) { counters.append(("dropped.\(reason)", count)) }
        for (reason, count) in quarantineReasons.sorted(by: { $0.key < $1.key }) { counters.append(("quarantined.\(reason)", count)) }
        if let terminal = manifest.countsAs, forwardedCount > 0 { counters.append((terminal, forwardedCount)) }
    }
}

/// Exponential backoff while a dependency is away: 100 ms doubling to 5 s. Logs the start
/// and the end of an outage once each, not every attempt.
public struct Backoff: Sendable {
    var delay: Duration = .milliseconds(100)
    var failing = false

    public init() {}

    public mutating func wait(after error: any Error, logger: Logger, isStopping: () -> Bool) async {
        if !failing {
            logger.warning("dependency unavailable; retrying with backoff", metadata: ["error": .string("\(error)")])
            failing = true
        }
        let until = ContinuousClock.now + delay
        while !isStopping(), ContinuousClock.now < until {
            try? await Task.sleep(for: .milliseconds(50))
        }
        delay = min(delay * 2, .seconds(5))
    }

    public mutating func reset(logger: Logger) {
        if failing { logger.notice("dependency available again") }
        failing = false
        delay = .milliseconds(100)
    }
}
