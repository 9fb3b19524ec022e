import Foundation
import Hummingbird
import NIOCore
import Sluice
import SluiceHTTP
import SluicePostgres
import SluiceRedis

/// `POST /intake`: accepts NDJSON (one JSON object per line), records a job and appends the
/// events to the function's outputs in chunks of `batch` events (and at most `max_chunk_bytes`). Answers
/// `202 {"job_id", "status": "received", "received": N}`.
///
/// This is the runtime's proving HTTP function; the `ingest` function replaces it with
/// streaming parsing of every upload format.
///
/// `config.max_body_bytes` (default 64 MiB) bounds the body: larger ones get 413.
public struct IntakeFunction: HTTPFunction {
    let manifest: Manifest
    let redis: RedisClient
    let pool: PostgresPool
    let keys: StreamKeys
    let jobs: JobStore
    let maxBody: Int

    public init(setup: PipelineSetup) throws {
        manifest = setup.manifest
        redis = setup.dependencies.redis
        pool = setup.dependencies.postgres
        keys = setup.dependencies.keys
        jobs = setup.dependencies.jobs(logger: setup.logger)
        maxBody = Int(setup.manifest.config["max_body_bytes"]?.intValue ?? 64 << 20)
        guard !manifest.outputs.isEmpty else {
            throw ManifestError(.missingField, file: manifest.file, key: "outputs", message: "intake needs at least one output")
        }
    }

    public func addRoutes(to router: Router<SluiceRequestContext>) {
        router.post("/intake") { request, _ -> JSONResponse in
            try await self.accept(request)
        }
    }

    func accept(_ request: Request) async throws -> JSONResponse {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBody)
        } catch {
            throw Problem(.contentTooLarge, code: "body_too_large", detail: "the body is larger than \(maxBody) bytes")
        }
        let events = try body.withUnsafeReadableBytes { try Self.parseNDJSON($0) }
        let jobID = UUID().uuidString.lowercased()
        let traceID = TraceContext.traceID(in: request.headers) ?? TraceContext.newTraceID()
        try await jobs.openWhole(jobID, format: "ndjson", received: events.count)
        let receivedAt = PipelineClock.milliseconds()
        var commands: [[RedisArgument]] = []
        // Chunks of `batch` events, cut earlier at `max_chunk_bytes` (an event larger than that goes alone).
        var chunkJSON: [UInt8] = [UInt8(ascii: "[")], count = 0
        func cut() {
            guard count > 0 else { return }
            chunkJSON.append(UInt8(ascii: "]"))
            let fields = ChunkCodec.encode(eventsJSON: chunkJSON, count: count, jobID: jobID, traceID: traceID, receivedAt: receivedAt)
            for output in manifest.outputs {
                var command: [RedisArgument] = ["XADD", RedisArgument(keys.stream(output)), "*"]
                for (name, value) in fields { command.append(RedisArgument(name)); command.append(RedisArgument(value)) }
                commands.append(command)
            }
            chunkJSON = [UInt8(ascii: "[")]
            count = 0
        }
        for event in events {
            var written: [UInt8] = []
            event.value.write(into: &written)
            if count > 0, count >= manifest.batch || chunkJSON.count + 1 + written.count + 1 > manifest.maxChunkBytes { cut() }
            if count > 0 { chunkJSON.append(UInt8(ascii: ",")) }
            chunkJSON += written
            count += 1
        }
        cut()
        commands.append(jobs.receivedCommand(jobID, received: events.count))
        var sent = 0
        while sent < commands.count {
            let slice = Array(commands[sent..<min(sent + 64, commands.count)])
            let replies = try await redis.pipeline(slice)
            if let failure = replies.first(where: { if case .error = $0 { true } else { false } }), case .error(let message) = failure {
                throw RedisError(.command, message)
            }
            sent += slice.count
        }
        return JSONResponse(status: .accepted, value: [
            "job_id": .string(jobID), "status": .string(JobStatus.received.rawValue), "received": .int(Int64(events.count)),
        ])
    }

    /// Parses NDJSON: every non-blank line one JSON value.
    /// - Throws: ``Problem`` 400 `invalid_json` naming the line and the byte offset in the body.
    static func parseNDJSON(_ bytes: UnsafeRawBufferPointer) throws -> [Event] {
        var events: [Event] = []
        var lineStart = 0
        var line = 1
        let parser = JSONParser()
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd])
            if slice.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) {
                do {
                    events.append(Event(try parser.parse(slice)))
                } catch {
                    throw Problem(.badRequest, code: "invalid_json",
                                  detail: "line \(line) is not valid JSON (\(error.code.rawValue))",
                                  extra: ["line": .int(Int64(line)), "offset": .int(Int64(lineStart + error.offset))])
                }
            }
            lineStart = lineEnd + 1
            line += 1
        }
        return events
    }
}
