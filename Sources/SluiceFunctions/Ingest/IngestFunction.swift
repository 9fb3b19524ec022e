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
import SluicePrivacy
import SluiceRedis
import Synchronization

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
    let datasets: DatasetStore
    /// The first stream of each dataset's chain.
    let router: DatasetRouter
    /// Roles that may create a dataset (`config.create_datasets`), by declaring it or by a first
    /// upload; `admin` always may.
    let createDatasets: Set<String>
    /// The most datasets the catalog may hold (`config.max_datasets`): the API and first uploads
    /// create no more (`409 dataset_limit_reached`).
    let maxDatasets: Int
    /// ingest's `config.csv`, under each dataset's `steps.ingest.csv`.
    let csvConfig: JSONValue?

    public init(setup: PipelineSetup) async throws {
        manifest = setup.manifest
        redis = setup.dependencies.redis
        pool = setup.dependencies.postgres
        keys = setup.dependencies.keys
        logger = setup.logger
        jobs = setup.dependencies.jobs(logger: setup.logger)
        let config = manifest.config
        maxBody = Int(config["max_body_bytes"]?.intValue ?? 1 << 30)
        limits = UploadLimits(maxRecordBytes: Int(config["max_record_bytes"]?.intValue ?? 1 << 20))
        // One record always fits a chunk: a record may reach max_record_bytes, a chunk max_chunk_bytes.
        guard limits.maxRecordBytes >= 1, limits.maxRecordBytes < manifest.maxChunkBytes else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.max_record_bytes",
                                message: "must be at least 1 and less than max_chunk_bytes (\(manifest.maxChunkBytes)), so that one record always fits a chunk")
        }
        _ = try CSVColumnMapping(config: config["csv"], file: manifest.file, paths: [:], jsonColumns: [])
        uploadLease = try manifest.configDuration("upload_lease", default: .seconds(60))
        reapInterval = try manifest.configDuration("reap_interval", default: .seconds(15))
        recordWait = try manifest.configDuration("record_wait", default: .seconds(10))
        callbacks = OutboundPolicy(configuration: setup.configuration)
        readAllJobs = Set((config["read_all_jobs"]?.arrayValue ?? []).compactMap(\.stringValue))
        createDatasets = Set((config["create_datasets"]?.arrayValue ?? []).compactMap(\.stringValue))
        maxDatasets = Int(config["max_datasets"]?.intValue ?? 1000)
        datasets = setup.dependencies.datasets
        router = setup.dependencies.router
        csvConfig = config["csv"]
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

    public func addRoutes(to router: Router<SluiceRequestContext>) {
        router.post("/api/v1/ingest") { request, context -> JSONResponse in
            try await self.ingest(request, into: DatasetReference.events, create: false, caller: context.caller)
        }
        router.post("/api/v1/datasets/{name}/ingest") { request, context -> JSONResponse in
            let name = try context.parameters.require("name")
            return try await self.ingest(request, into: name, create: self.mayCreateDatasets(context.caller), caller: context.caller)
        }
        router.post("/api/v1/datasets") { request, context -> JSONResponse in
            try await self.createDataset(request, caller: context.caller)
        }
        router.put("/api/v1/datasets/{name}") { request, context -> JSONResponse in
            try await self.updateDataset(try context.parameters.require("name"), request, caller: context.caller)
        }
        router.get("/api/v1/jobs") { request, context -> JSONResponse in
            try await self.listJobs(request, caller: context.caller)
        }
        router.get("/api/v1/jobs/{id}") { request, context -> JSONResponse in
            let id = try context.parameters.require("id")
            return JSONResponse(status: .ok, value: try await self.job(id, for: JobReader(context.caller, readAll: self.readAllJobs)))
        }
        router.delete("/api/v1/jobs/{id}") { request, context -> JSONResponse in
            try await self.cancel(try context.parameters.require("id"), by: JobReader(context.caller, readAll: []))
        }
        router.post("/api/v1/process/transform") { request, _ -> JSONResponse in
            try await self.processTransform(request)
        }
        router.post("/api/v1/data") { request, context -> Response in
            try await self.postRecord(request, caller: context.caller)
        }
    }

    // MARK: - Upload

    func ingest(_ request: Request, into name: String, create: Bool, caller: Caller?) async throws -> JSONResponse {
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
        let target = try await uploadTarget(name, create: create, query: request.uri.queryParameters)
        var callback: String?
        if let url = request.headers[CallsFunction.callbackHeader] ?? request.uri.queryParameters.get("callback_url").map({ String($0) }) {
            callback = try await callbacks.acceptCallback(url)
        }
        return try await upload(request.body, format: format, contentType: contentType, headers: request.headers, caller: caller, callback: callback,
                                target: target).answer
    }

    /// Records a new job and receives `body` into it; answers the job id and the 202 answer.
    /// `callback` is where notify announces the job's end, besides its configured channels.
    func upload(_ body: RequestBody, format: UploadFormat, contentType: String?, headers: HTTPFields, caller: Caller?,
                callback: String? = nil, target: UploadTarget) async throws -> (jobID: String, answer: JSONResponse) {
        let jobID = UUID().uuidString.lowercased()
        let traceID = TraceContext.traceID(in: headers) ?? TraceContext.newTraceID()
        do {
            try await jobs.open(.init(id: jobID, format: format.rawValue, contentType: contentType, callbackURL: callback,
                                      createdBy: caller?.ownerKey, traceID: traceID, dataset: target.name))
        } catch {
            throw Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the job store is not available; try again")
        }
        // The lease tells the reaper of every ingest replica that this upload is alive.
        let lease = UploadLease(jobID: jobID, lease: uploadLease, redis: redis, keys: keys)
        do {
            let answer = try await accept(body, jobID: jobID, traceID: traceID, format: format, target: target,
                                          owner: caller?.ownerKey)
            await lease.release(redis: redis, keys: keys, jobID: jobID)
            return (jobID, answer)
        } catch {
            await lease.release(redis: redis, keys: keys, jobID: jobID)
            throw error
        }
    }

    /// Receives the body of job `jobID` and records its end. `owner` (the caller's key) owns a
    /// dataset the upload creates.
    func accept(_ body: RequestBody, jobID: String, traceID: String, format: UploadFormat, target: UploadTarget,
                owner: String?) async throws -> JSONResponse {
        var publisher = UploadPublisher(jobID: jobID, traceID: traceID, batch: manifest.batch, maxChunkBytes: manifest.maxChunkBytes,
                                        outputs: manifest.outputs, keys: keys, redis: redis, function: manifest.name,
                                        maxQuarantinedBytes: limits.maxQuarantinedBytes)
        let router = self.router
        publisher.route = { dataset in try await router.entry(for: dataset) }
        let detected = Mutex<DatasetSpec?>(nil)
        var csvMapping: CSVColumnMapping
        switch target {
        case .existing(let stored):
            publisher.dataset = DatasetReference(name: stored.spec.name, version: stored.version)
            csvMapping = try csvColumnMapping(for: stored.spec)
        case .create(let name, let key, let time):
            csvMapping = CSVColumnMapping(paths: [:], jsonColumns: [])
            let datasets = self.datasets, textCells = format == .csv
            let maxDatasets = self.maxDatasets
            publisher.detect = { records in
                let spec = try DatasetDetector.detect(name: name, records: records, textCells: textCells, key: key, time: time)
                do {
                    let registration = try await datasets.register(spec, origin: "detected", createOnly: true, owner: owner, maxDatasets: maxDatasets)
                    detected.withLock { $0 = registration.stored.spec }
                    return DatasetReference(name: name, version: registration.stored.version)
                } catch let error as DatasetError where error.code == .exists {
                    // Another first upload created it meanwhile: this one's records go to that
                    // dataset as they are (validate quarantines those that do not fit), and
                    // neither spec is merged into the other.
                    guard let stored = try await datasets.spec(name) else { throw error }
                    return DatasetReference(name: name, version: stored.version)
                }
            }
        }
        csvMapping.headerMasking = { Self.headerMasker.maskKeys($0) }
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
        answer["dataset"] = .string(target.name)
        if let spec = detected.withLock({ $0 }) { answer["detected"] = spec.json }
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
        case let error as DatasetError:
            IngestFailure(DatasetRoutes.problem(error))
        case is RedisError:
            IngestFailure(Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the event stream is not available; try again"))
        case let error as FunctionError where error.kind == .retryable:
            IngestFailure(Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the dataset catalog is not available; try again"))
        case let error as FunctionError:
            // The dataset's chain cannot be followed (a function without a manifest here).
            IngestFailure(Problem(.internalServerError, code: error.code, detail: error.message))
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
}

/// An upload refused part-way: the problem to answer once the job is marked failed.
struct IngestFailure: Error {
    var problem: Problem
    init(_ problem: Problem) { self.problem = problem }
}
