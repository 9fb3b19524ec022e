import Foundation
import Hummingbird
import Logging
import NIOCore
import Sluice
import SluiceUploads
import SluiceHTTP
import SluiceNotify
import SluicePostgres
import ServiceLifecycle
import SluiceRedis

/// The pipeline's front door (`POST /api/v1/ingest`) and its job API
/// (`GET /api/v1/jobs[/{id}]`, `DELETE /api/v1/jobs/{id}`), plus `POST /api/v1/process/transform`.
///
/// An upload is decoded as it arrives (``UploadDecoder``), never held whole: events go to the
/// function's outputs in chunks of `batch`, records that do not parse go to the quarantine
/// stream with their line. The job row exists from the first byte; when the body ends its
/// `received` count is final and the job moves to `processing`. A body that cannot be parsed
/// at all, holds no record, or is larger than `config.max_body_bytes`, fails the job: the job row is marked
/// `failed` (which stops the load stage, see ``LoadFunction``), whatever was loaded is deleted,
/// the job's remaining chunks are dropped, and the client gets a problem naming the offset.
public struct IngestFunction: HTTPFunction {
    let manifest: Manifest
    let redis: RedisClient
    let pool: PostgresPool
    let keys: StreamKeys
    let jobs: JobStore
    let logger: Logger
    let maxBody: Int
    let limits: UploadLimits
    let csvMapping: CSVColumnMapping
    let processChain: [FunctionInvoker]
    let uploadLease: Duration
    let reapInterval: Duration
    /// How long `POST /api/v1/data` waits for its record's fate before answering 202.
    let recordWait: Duration
    /// Where callers may have a job's end announced (`X-Callback-Url` or `?callback_url=`).
    let callbacks: OutboundPolicy
    /// Roles that may read every job (`config.read_all_jobs`); `admin` always may. Everyone
    /// else sees and cancels only the jobs they created.
    let readAllJobs: Set<String>

    public init(setup: PipelineSetup) async throws {
        manifest = setup.manifest
        redis = setup.dependencies.redis
        pool = setup.dependencies.postgres
        keys = setup.dependencies.keys
        logger = setup.logger
        jobs = JobStore(pool: pool, redis: redis, keys: keys, logger: setup.logger)
        let config = manifest.config
        maxBody = Int(config["max_body_bytes"]?.intValue ?? 1 << 30)
        limits = UploadLimits(maxRecordBytes: Int(config["max_record_bytes"]?.intValue ?? 1 << 20))
        // One record always fits a chunk: a record may reach max_record_bytes, a chunk max_chunk_bytes.
        guard limits.maxRecordBytes >= 1, limits.maxRecordBytes < manifest.maxChunkBytes else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.max_record_bytes",
                                message: "must be at least 1 and less than max_chunk_bytes (\(manifest.maxChunkBytes)), so that one record always fits a chunk")
        }
        var mapping = try CSVColumnMapping(config: config["csv"], file: manifest.file)
        mapping.headerMasker = Self.headerMasker
        csvMapping = mapping
        uploadLease = try manifest.configDuration("upload_lease", default: .seconds(60))
        reapInterval = try manifest.configDuration("reap_interval", default: .seconds(15))
        recordWait = try manifest.configDuration("record_wait", default: .seconds(10))
        callbacks = OutboundPolicy(configuration: setup.configuration)
        readAllJobs = Set((config["read_all_jobs"]?.arrayValue ?? []).compactMap(\.stringValue))
        guard uploadLease >= .seconds(1) else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.upload_lease", message: "must be at least 1s")
        }
        guard !manifest.outputs.isEmpty else {
            throw ManifestError(.missingField, file: manifest.file, key: "outputs", message: "ingest needs at least one output")
        }
        // The stages `POST /api/v1/process/transform` runs, built from their own manifests.
        var chain: [FunctionInvoker] = []
        let names = config["process_transform"].flatMap { value -> [String]? in
            if case .array(let items) = value { return items.compactMap(\.stringValue) }
            return nil
        } ?? ["validate", "enrich", "transform"]
        var dryRun = setup
        dryRun.dependencies.dryRun = true
        for name in names {
            if let stage = try await setup.registry.makeInvoker(named: name, loader: setup.dependencies.manifests, setup: dryRun) {
                chain.append(stage)
            }
        }
        processChain = chain
    }

    public var backgroundServices: [any Service] {
        [UploadReaper(jobs: jobs, lease: uploadLease, interval: reapInterval, logger: logger,
                      fail: { [self] jobID, code in await self.fail(jobID, code: code) })]
    }

    public func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("/api/v1/ingest") { request, _ -> JSONResponse in
            try await self.ingest(request)
        }
        router.get("/api/v1/jobs") { request, _ -> JSONResponse in
            try await self.listJobs(request)
        }
        router.get("/api/v1/jobs/{id}") { request, context -> JSONResponse in
            let id = try context.parameters.require("id")
            return JSONResponse(status: .ok, value: try await self.job(id, for: JobReader(Caller(request), readAll: self.readAllJobs)))
        }
        router.delete("/api/v1/jobs/{id}") { request, context -> JSONResponse in
            try await self.cancel(try context.parameters.require("id"), by: JobReader(Caller(request), readAll: []))
        }
        router.post("/api/v1/process/transform") { request, _ -> JSONResponse in
            try await self.processTransform(request)
        }
        router.post("/api/v1/data") { request, _ -> Response in
            try await self.postRecord(request)
        }
    }

    // MARK: - Upload

    func ingest(_ request: Request) async throws -> JSONResponse {
        let filename = request.uri.queryParameters.get("filename")
            ?? request.headers[.contentDisposition].flatMap(UploadFormat.filename(fromContentDisposition:))
        let contentType = request.headers[.contentType]
        guard let format = UploadFormat.detect(query: request.uri.queryParameters.get("format"), contentType: contentType, filename: filename) else {
            throw Problem(.unsupportedMediaType, code: "unsupported_format",
                          detail: "name the format with Content-Type (application/x-ndjson, application/json, text/csv, application/xml, text/plain) or ?format=")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBody {
            throw Problem(.contentTooLarge, code: "body_too_large", detail: "the body is larger than \(maxBody) bytes",
                          extra: ["limit": .int(Int64(maxBody))])
        }
        var callback: String?
        if let url = request.headers[CallsFunction.callbackHeader] ?? request.uri.queryParameters.get("callback_url").map({ String($0) }) {
            callback = try await callbacks.acceptCallback(url)
        }
        return try await upload(request.body, format: format, contentType: contentType, headers: request.headers, callback: callback).answer
    }

    /// Records a new job and receives `body` into it; answers the job id and the 202 answer.
    /// `callback` is where notify announces the job's end, besides its configured channels.
    func upload(_ body: RequestBody, format: UploadFormat, contentType: String?, headers: HTTPFields,
                callback: String? = nil) async throws -> (jobID: String, answer: JSONResponse) {
        let jobID = UUID().uuidString.lowercased()
        let traceID = TraceContext.traceID(in: headers) ?? TraceContext.newTraceID()
        do {
            try await jobs.open(.init(id: jobID, format: format.rawValue, contentType: contentType, callbackURL: callback,
                                      createdBy: Caller(headers: headers)?.ownerKey, traceID: traceID))
        } catch {
            throw Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the job store is not available; try again")
        }
        // The lease tells the reaper of every ingest replica that this upload is alive.
        let lease = UploadLease(jobID: jobID, lease: uploadLease, redis: redis, keys: keys)
        do {
            let answer = try await accept(body, jobID: jobID, traceID: traceID, format: format)
            await lease.release(redis: redis, keys: keys, jobID: jobID)
            return (jobID, answer)
        } catch {
            await lease.release(redis: redis, keys: keys, jobID: jobID)
            throw error
        }
    }

    /// Receives the body of job `jobID` and records its end.
    func accept(_ body: RequestBody, jobID: String, traceID: String, format: UploadFormat) async throws -> JSONResponse {
        var publisher = UploadPublisher(jobID: jobID, traceID: traceID, batch: manifest.batch, maxChunkBytes: manifest.maxChunkBytes,
                                        outputs: manifest.outputs, keys: keys, redis: redis, function: manifest.name,
                                        maxQuarantinedBytes: limits.maxQuarantinedBytes)
        let schema: JSONValue?
        do {
            switch format {
            case .ndjson: schema = try await receive(body, decoder: ByteOrderMarkSkipping(NDJSONDecoder(limits: limits)), into: &publisher)
            case .json: schema = try await receive(body, decoder: ByteOrderMarkSkipping(JSONArrayDecoder(limits: limits)), into: &publisher)
            case .text: schema = try await receive(body, decoder: ByteOrderMarkSkipping(TextDecoder(limits: limits)), into: &publisher)
            case .xml: schema = try await receive(body, decoder: ByteOrderMarkSkipping(XMLDecoder(limits: limits)), into: &publisher)
            case .csv:
                schema = try await receive(body, decoder: ByteOrderMarkSkipping(CSVDecoder(limits: limits, mapping: csvMapping)), into: &publisher)
            }
        } catch let failure as IngestFailure {
            await fail(jobID, code: failure.problem.code)
            logger.notice("upload refused", metadata: ["job": .string(jobID), "code": .string(failure.problem.code)])
            var problem = failure.problem
            problem.extra["job_id"] = .string(jobID)
            throw problem
        }
        do {
            let state = try await jobs.finishReceiving(jobID, received: publisher.received, schema: schema, bytes: publisher.bytes)
            logger.info("upload received", metadata: [
                "job": .string(jobID), "trace": .string(traceID), "format": .string(format.rawValue), "events": .stringConvertible(publisher.received),
                "bytes": .stringConvertible(publisher.bytes), "state": .string(state?.rawValue ?? ""),
            ])
        } catch {
            await fail(jobID, code: "ingest_unavailable")
            throw Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the upload could not be recorded; try again",
                          extra: ["job_id": .string(jobID)])
        }
        var answer: JSONObject = ["job_id": .string(jobID), "status": .string(JobStatus.received.rawValue), "format": .string(format.rawValue),
                                  "received": .int(Int64(publisher.received))]
        if let schema { answer["schema"] = schema }
        return JSONResponse(status: .accepted, value: .object(answer))
    }

    /// Masks the column names of a CSV upload before the events or the job's schema hold them:
    /// a file without a header row has its first record taken as one. The pipeline's kinds and
    /// operators, with `replace` for those it pseudonymises (ingest holds no pseudonym key).
    static let headerMasker = PIIMasker(
        operators: PIIMaskMiddleware.defaultOperators.mapValues { $0 == .pseudonym ? .replace : $0 }, key: [])

    /// Feeds the body through `decoder`, publishing as it goes; answers the CSV schema.
    func receive<D: UploadDecoder>(_ body: RequestBody, decoder: D, into publisher: inout UploadPublisher) async throws -> JSONValue? {
        var decoder = decoder
        var records: [UploadRecord] = []
        do {
            for try await buffer in body {
                publisher.bytes += buffer.readableBytes
                guard publisher.bytes <= maxBody else {
                    throw IngestFailure(Problem(.contentTooLarge, code: "body_too_large", detail: "the body is larger than \(maxBody) bytes",
                                                extra: ["limit": .int(Int64(maxBody))]))
                }
                records.removeAll(keepingCapacity: true)
                let result: Result<Void, UploadError> = buffer.withUnsafeReadableBytes { raw in
                    do throws(UploadError) {
                        try decoder.feed(raw, into: &records)
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
                try result.get()
                try await publish(records, via: &publisher)
            }
            records.removeAll(keepingCapacity: true)
            try decoder.finish(into: &records)
            try await publish(records, via: &publisher)
            try await publisher.finish()
            // Nothing to process (no bytes, blank lines, a CSV header alone, `[]`) is a
            // mistake of the sender's, told at once rather than as a job of nothing.
            guard publisher.received > 0 else {
                throw IngestFailure(Problem(.badRequest, code: UploadError.Code.empty.rawValue, detail: "the body holds no events",
                                            extra: ["offset": .int(Int64(publisher.bytes))]))
            }
        } catch {
            // No chunk of a refused upload is appended after the refusal.
            await publisher.settle()
            throw Self.failure(for: error)
        }
        if let csv = (decoder as? ByteOrderMarkSkipping<CSVDecoder>)?.decoder {
            return .array(csv.schema.map { ["name": .string($0.name), "type": .string($0.type.rawValue)] })
        }
        return nil
    }

    /// The refusal of an upload whose receiving threw `error`.
    static func failure(for error: any Error) -> IngestFailure {
        switch error {
        case let error as UploadError:
            IngestFailure(Problem(.badRequest, code: error.code.rawValue, detail: "the body cannot be parsed: \(error.message)",
                                  extra: ["offset": .int(Int64(error.offset))]))
        case let failure as IngestFailure:
            failure
        case is RedisError:
            IngestFailure(Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the event stream is not available; try again"))
        default:
            IngestFailure(Problem(.badRequest, code: "body_incomplete", detail: "the body ended before it was complete"))
        }
    }

    func publish(_ records: [UploadRecord], via publisher: inout UploadPublisher) async throws {
        for record in records {
            switch record {
            case .event(let value, let line):
                try await publisher.add(Event(value), line: line)
            case .row(let row, let shape, let line):
                try await publisher.add(row: row, shape: shape, line: line)
            case .malformed(let reason, let line, let raw):
                try await publisher.quarantine(["reason": .string(reason), "function": .string(manifest.name), "line": .int(Int64(line)), "raw": .string(raw)])
            }
            if publisher.isFull { try await publisher.flush() }
        }
    }

    /// Fails job `jobID` with `code` (``JobStore/fail(_:code:discard:)``), deleting what was
    /// loaded of it.
    func fail(_ jobID: String, code: String) async {
        await jobs.fail(jobID, code: code) { connection in try LoadFunction.discardRows(ofJob: jobID, on: connection) }
    }

    // MARK: - Jobs

    /// Job `id` as `reader` may see it: a job of someone else's is answered as if it did not
    /// exist (404), so that ids reveal nothing.
    func job(_ id: String, for reader: JobReader) async throws -> JSONValue {
        guard SQLText.isUUID(id) else { throw Self.jobNotFound }
        let found: JSONValue?
        do {
            found = try await jobs.job(id.lowercased(), for: reader)
        } catch {
            throw Self.jobsUnavailable
        }
        guard let found else { throw Self.jobNotFound }
        return found
    }

    static let jobNotFound = Problem(.notFound, code: "job_not_found", detail: "no job has this id")
    static let jobsUnavailable = Problem(.serviceUnavailable, code: "jobs_unavailable", detail: "the job store is not available; try again")

    func listJobs(_ request: Request) async throws -> JSONResponse {
        let reader = JobReader(Caller(request), readAll: readAllJobs)
        let query = request.uri.queryParameters
        let limitText = query.get("limit") ?? "50"
        guard let limit = Int(limitText), (1...500).contains(limit) else {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "limit must be an integer from 1 to 500", extra: ["parameter": "limit"])
        }
        var status: JobStatus?
        if let name = query.get("status") {
            guard let known = JobStatus(rawValue: String(name)) else {
                throw Problem(.badRequest, code: "invalid_parameter", detail: "status must be one of \(JobStatus.names.joined(separator: ", "))",
                              extra: ["parameter": "status"])
            }
            status = known
        }
        let before = query.get("before").map { String($0).lowercased() }
        if let before, !SQLText.isUUID(before) {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "before must be a job id (the next_before of the previous page)",
                          extra: ["parameter": "before"])
        }
        let page: (jobs: [JSONValue], next: String?)
        do {
            page = try await jobs.list(status: status, before: before, limit: limit, for: reader)
        } catch {
            throw Self.jobsUnavailable
        }
        let answer: JSONObject = ["jobs": .array(page.jobs), "next_before": page.next.map(JSONValue.string) ?? .null]
        return JSONResponse(status: .ok, value: .object(answer))
    }

    /// Cancels job `id` for its creator or an `admin`; anyone else gets 404.
    func cancel(_ id: String, by reader: JobReader) async throws -> JSONResponse {
        let jobID = id.lowercased()
        guard SQLText.isUUID(jobID) else { throw Self.jobNotFound }
        let previous: JobStatus?
        do {
            previous = try await jobs.cancel(jobID, by: reader)
        } catch {
            throw Self.jobsUnavailable
        }
        guard let previous else { throw Self.jobNotFound }
        guard previous.isOpen else {
            throw Problem(.conflict, code: "job_finished", detail: "the job has already ended", extra: ["job_status": .string(previous.rawValue)])
        }
        logger.info("job cancelled", metadata: ["job": .string(jobID)])
        return JSONResponse(status: .ok, value: try await job(jobID, for: reader))
    }

    // MARK: - Dry run

    /// Runs the process chain (validate → enrich → transform by default) on the posted JSON
    /// array (or NDJSON) of events and answers each event's fate; writes nothing.
    func processTransform(_ request: Request) async throws -> JSONResponse {
        guard !processChain.isEmpty else {
            throw Problem(.serviceUnavailable, code: "not_configured", detail: "no stage manifests were found for the dry run")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: 8 << 20)
        } catch {
            throw Problem(.contentTooLarge, code: "body_too_large", detail: "the body is larger than \(8 << 20) bytes")
        }
        var records: [UploadRecord] = []
        do {
            let bytes = Array(body.readableBytesView)
            let first = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
            if first == UInt8(ascii: "[") {
                var decoder = JSONArrayDecoder(limits: limits)
                records = try decoder.decodeAll(bytes)
            } else {
                var decoder = NDJSONDecoder(limits: limits)
                records = try decoder.decodeAll(bytes)
            }
        } catch {
            throw Problem(.badRequest, code: error.code.rawValue, detail: "the body cannot be parsed: \(error.message)",
                          extra: ["offset": .int(Int64(error.offset))])
        }
        guard records.count <= 10_000 else {
            throw Problem(.contentTooLarge, code: "too_many_events", detail: "at most 10000 events per dry run")
        }
        var results: [JSONValue] = Array(repeating: .null, count: records.count)
        var live: [(index: Int, event: Event)] = []
        for (index, record) in records.enumerated() {
            switch record {
            case .event, .row:
                if let value = try? record.eventValue() {
                    live.append((index, Event(value)))
                } else {
                    results[index] = ["index": .int(Int64(index)), "outcome": "quarantine", "reason": "invalid_json", "stage": .string(manifest.name)]
                }
            case .malformed(let reason, _, _):
                results[index] = ["index": .int(Int64(index)), "outcome": "quarantine", "reason": .string(reason), "stage": .string(manifest.name)]
            }
        }
        for stage in processChain where !live.isEmpty {
            let chunk = Chunk(id: "dry-run-\(UUID().uuidString.lowercased())", events: live.map(\.event))
            let outcomes: [Outcome]
            do {
                outcomes = try await stage.invoke(chunk, attempt: 1)
            } catch {
                throw Problem(error.kind == .retryable ? .serviceUnavailable : .unprocessableContent, code: error.code,
                              detail: error.message, extra: ["stage": .string(stage.manifest.name)])
            }
            var next: [(index: Int, event: Event)] = []
            for (item, outcome) in zip(live, outcomes) {
                switch outcome {
                case .forward(let event, _): next.append((item.index, event))
                case .drop(let reason):
                    results[item.index] = ["index": .int(Int64(item.index)), "outcome": "drop", "reason": .string(reason),
                                           "stage": .string(stage.manifest.name)]
                case .quarantine(let reason, _):
                    results[item.index] = ["index": .int(Int64(item.index)), "outcome": "quarantine", "reason": .string(reason),
                                           "stage": .string(stage.manifest.name)]
                }
            }
            live = next
        }
        for item in live {
            results[item.index] = ["index": .int(Int64(item.index)), "outcome": "forward", "row": item.event.value]
        }
        var counts: JSONObject = ["forward": 0, "drop": 0, "quarantine": 0]
        for result in results {
            if let outcome = result["outcome"]?.stringValue, case .int(let n)? = counts[outcome] { counts[outcome] = .int(n + 1) }
        }
        return JSONResponse(status: .ok, value: [
            "stages": .array(processChain.map { .string($0.manifest.name) }), "counts": .object(counts), "results": .array(results),
        ])
    }
}

/// An upload refused part-way: the problem to answer once the job is marked failed.
struct IngestFailure: Error {
    var problem: Problem
    init(_ problem: Problem) { self.problem = problem }
}

/// Collects an upload's events into chunks and appends them to the outputs (and malformed
/// records to the quarantine stream), counting what it received. Events are kept as the chunk's
/// JSON array, written as they come; a CSV record arrives already written as a row, and a chunk
/// of rows carries their shape once (``ChunkCodec`` version 2). One chunk is appended while the
/// next is decoded (the Redis round trip no longer stalls the body), never more: chunks stay in
/// order and memory stays at two chunks.
///
/// A chunk is cut at `batch` events or when the next event would take it past `maxChunkBytes`
/// (its `events`, or its `shape` and `rows`), whichever comes first, so that no stage ever
/// holds more than that of one chunk. An event whose JSON alone is larger (a record within
/// `max_record_bytes` that grew when written as JSON, a text line of escapes) is quarantined
/// as `record_too_long` with the start of its text.
struct UploadPublisher {
    let jobID: String
    let traceID: String
    let batch: Int
    let maxChunkBytes: Int
    let outputs: [String]
    let keys: StreamKeys
    let redis: RedisClient
    let function: String
    /// How much of an event too large for a chunk the quarantine keeps.
    let maxQuarantinedBytes: Int
    /// The chunk's events (or rows) so far: `[` and the events, comma-separated.
    var events: [UInt8] = [UInt8(ascii: "[")]
    var eventCount = 0
    /// The shape of the chunk's rows; nil for a chunk of events.
    var shape: [UInt8]?
    /// The quarantine chunk so far: `[` and the items, comma-separated.
    var quarantined: [UInt8] = [UInt8(ascii: "[")]
    var quarantinedCount = 0
    var received = 0
    var bytes = 0
    /// The append of the previous chunk, still in flight.
    var pending: Task<Void, any Error>?

    init(jobID: String, traceID: String, batch: Int, maxChunkBytes: Int, outputs: [String], keys: StreamKeys, redis: RedisClient,
         function: String, maxQuarantinedBytes: Int = UploadLimits().maxQuarantinedBytes) {
        self.jobID = jobID
        self.traceID = traceID
        self.batch = batch
        self.maxChunkBytes = maxChunkBytes
        self.outputs = outputs
        self.keys = keys
        self.redis = redis
        self.function = function
        self.maxQuarantinedBytes = maxQuarantinedBytes
    }

    var isFull: Bool { eventCount >= batch || quarantinedCount >= batch }

    /// Adds an event to a chunk of events (flushed first when it holds rows, or when the event
    /// would take it past `maxChunkBytes`).
    mutating func add(_ event: Event, line: Int = 0) async throws {
        if eventCount > 0, shape != nil { try await flush() }
        let start = events.count
        if eventCount > 0 { events.append(UInt8(ascii: ",")) }
        event.value.write(into: &events)
        // `]` closes the array: the chunk's field is `events.count + 1` bytes.
        guard events.count + 1 > maxChunkBytes else {
            eventCount += 1
            received += 1
            return
        }
        // Too large with what is there already: the event opens the next chunk (copied over
        // once, at a chunk boundary only), or, too large for any chunk, goes to the quarantine.
        let separator = eventCount > 0 ? 1 : 0
        let written = Array(events[(start + separator)...])
        events.removeSubrange(start...)
        guard written.count + 2 <= maxChunkBytes else {
            try await quarantine(["reason": "record_too_long", "function": .string(function), "line": .int(Int64(line)),
                                  "raw": .string(String(decoding: written.prefix(maxQuarantinedBytes), as: UTF8.self))])
            return
        }
        try await flush()
        events.append(contentsOf: written)
        eventCount = 1
        received += 1
    }

    /// Adds a row (a JSON array's bytes) whose event is `shape` with its values in place, to a
    /// chunk of rows of that shape (flushed first when it holds anything else, or when the row
    /// would take it past `maxChunkBytes`; an upload's records are all rows of one shape or all
    /// events, and arrays holding one buffer compare at once).
    mutating func add(row: [UInt8], shape: [UInt8], line: Int = 0) async throws {
        guard shape.count + row.count + 2 <= maxChunkBytes else {
            try await quarantine(["reason": "record_too_long", "function": .string(function), "line": .int(Int64(line)),
                                  "raw": .string(String(decoding: row.prefix(maxQuarantinedBytes), as: UTF8.self))])
            return
        }
        if eventCount > 0, self.shape != shape || shape.count + events.count + 1 + row.count + 1 > maxChunkBytes { try await flush() }
        if eventCount > 0 { events.append(UInt8(ascii: ",")) }
        self.shape = shape
        events.append(contentsOf: row)
        eventCount += 1
        received += 1
    }

    /// Adds an item to the quarantine chunk (appended with the next flush; flushed now when
    /// it holds `batch` items, or first when the item would take it past `maxChunkBytes`).
    /// Items are small: a record's text is cut to `maxQuarantinedBytes`.
    mutating func quarantine(_ item: JSONObject) async throws {
        var written: [UInt8] = []
        JSONValue.object(item).write(into: &written)
        if quarantinedCount > 0, quarantined.count + 1 + written.count + 1 > maxChunkBytes { try await flush() }
        if quarantinedCount > 0 { quarantined.append(UInt8(ascii: ",")) }
        quarantined.append(contentsOf: written)
        quarantinedCount += 1
        received += 1
        if quarantinedCount >= batch { try await flush() }
    }

    /// Starts appending what was collected, once the previous append is done.
    mutating func flush() async throws {
        try await pending?.value
        pending = nil
        let receivedAt = PipelineClock.milliseconds()
        var appends: [(stream: String, fields: [(String, [UInt8])])] = []
        if eventCount > 0 {
            events.append(UInt8(ascii: "]"))
            let fields = if let shape {
                ChunkCodec.encode(rowsJSON: events, shapeJSON: shape, count: eventCount, jobID: jobID, traceID: traceID, receivedAt: receivedAt)
            } else {
                ChunkCodec.encode(eventsJSON: events, count: eventCount, jobID: jobID, traceID: traceID, receivedAt: receivedAt)
            }
            shape = nil
            for output in outputs { appends.append((keys.stream(output), fields)) }
            events.removeAll(keepingCapacity: events.capacity <= 2 * maxChunkBytes)
            events.append(UInt8(ascii: "["))
            eventCount = 0
        }
        if quarantinedCount > 0 {
            quarantined.append(UInt8(ascii: "]"))
            appends.append((keys.stream("quarantine"),
                            ChunkCodec.encode(eventsJSON: quarantined, count: quarantinedCount, jobID: jobID, traceID: traceID, receivedAt: receivedAt)))
            quarantined.removeAll(keepingCapacity: true)
            quarantined.append(UInt8(ascii: "["))
            quarantinedCount = 0
        }
        guard !appends.isEmpty else { return }
        let redis = redis
        pending = Task {
            for append in appends { _ = try await redis.add(stream: append.stream, fields: append.fields) }
        }
    }

    /// Appends what is left and waits until every chunk is appended.
    mutating func finish() async throws {
        try await flush()
        try await pending?.value
        pending = nil
    }

    /// Waits for the append in flight, whatever its outcome (the upload is being refused).
    mutating func settle() async {
        _ = try? await pending?.value
        pending = nil
    }
}
