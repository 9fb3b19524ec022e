import Foundation
import Hummingbird
import NIOCore
import Sluice
import SluiceHTTP
import SluicePostgres

extension IngestFunction {
    /// `POST /api/v1/data`: one event through the whole pipeline as a job of its own, answered
    /// with its fate once the job settles: 201 loaded, 409 a duplicate, 422 quarantined, stale
    /// or without consent; 202 with the job when it takes longer than `config.record_wait`.
    func postRecord(_ request: Request, caller: Caller?) async throws -> Response {
        let value = try await request.decodeJSON(limit: limits.maxRecordBytes)
        guard case .object = value else {
            throw Problem(.badRequest, code: "invalid_record", detail: "the body must be one event: a JSON object")
        }
        var line = value.serializedBytes
        line.append(UInt8(ascii: "\n"))
        let target = try await uploadTarget(DatasetReference.events, create: false, query: request.uri.queryParameters)
        let (jobID, _) = try await upload(RequestBody(buffer: ByteBuffer(bytes: line)), format: .ndjson,
                                          contentType: request.headers[.contentType], headers: request.headers, caller: caller, target: target)
        let eventID = Event(value).id
        let deadline = ContinuousClock.now + recordWait
        var live = JobStore.Live(status: nil, fields: [:])
        while ContinuousClock.now < deadline {
            live = (try? await jobs.live(jobID)) ?? JobStore.Live(status: nil, fields: [:])
            if let status = live.status, !status.isOpen { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        var answer: JSONObject = ["job_id": .string(jobID), "event_id": eventID.map(JSONValue.string) ?? .null]
        let count = live.count
        switch live.status {
        case .completed? where count("loaded") == 1:
            answer["outcome"] = "loaded"
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            if let eventID, let escaped = eventID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) {
                headers[.location] = "/api/v1/data/\(escaped)"
            }
            return Response(status: .created, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSONValue.object(answer).serializedBytes)))
        case .completed?:
            if count("dropped.duplicate") == 1 {
                throw Problem(.conflict, code: "duplicate_event", detail: "an event with this event_id was loaded before", extra: answer)
            }
            if count("quarantined") == 1 {
                let reason = try? await pool.query("SELECT reason FROM quarantine WHERE job_id = \(jobID)::uuid LIMIT 1").scalar(String.self)
                answer["reason"] = .string(reason ?? "quarantined")
                throw Problem(.unprocessableContent, code: "quarantined", detail: "the event was quarantined (`reason` says why)", extra: answer)
            }
            let reason = count("dropped.stale") == 1 ? "stale" : count("dropped.no_consent") == 1 ? "no_consent"
                : count("dropped.geo_restricted") == 1 ? "geo_restricted" : "dropped"
            throw Problem(.unprocessableContent, code: reason, detail: "the event was not loaded: \(reason)", extra: answer)
        case .failed?, .cancelled?:
            answer["job_status"] = .string(live.status?.rawValue ?? "")
            throw Problem(.serviceUnavailable, code: "record_failed", detail: "the pipeline could not process the event; try again", extra: answer)
        default:
            answer["status"] = .string(JobStatus.processing.rawValue)
            return Response(status: .accepted, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: JSONValue.object(answer).serializedBytes)))
        }
    }
}
