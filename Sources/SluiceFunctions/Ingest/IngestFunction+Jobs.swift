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

/// The job API: `GET /api/v1/jobs[/{id}]`, `DELETE /api/v1/jobs/{id}`, over ``JobStore``.
extension IngestFunction {
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

    func listJobs(_ request: Request, caller: Caller?) async throws -> JSONResponse {
        let reader = JobReader(caller, readAll: readAllJobs)
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
}
