import Sluice
import SluicePostgres

/// Writes the quarantine stream into the `quarantine` table. Each entry holds items
/// `{"reason", "function", "event"}` (from a stage's quarantine outcome) or
/// `{"reason", "function", "line", "raw"}` (a record of an upload that did not parse).
/// `(stream, entry, position)` is unique, so an entry delivered again writes nothing twice.
/// With `counts_as: quarantined` the job counts an event as quarantined only once its row is
/// in PostgreSQL.
public struct QuarantineFunction: EventFunction {
    let pool: PostgresPool
    let stream: String

    public init(setup: FunctionSetup) throws {
        pool = try setup.resources.require(PostgresPool.self)
        stream = setup.manifest.inputStream ?? setup.manifest.name
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var functions: [String] = [], reasons: [String] = [], lines: [String] = [], raws: [String] = [], positions: [String] = []
        for (position, event) in chunk.events.enumerated() {
            functions.append(event.value["function"]?.stringValue ?? "unknown")
            reasons.append(event.value["reason"]?.stringValue ?? "unknown")
            if case .int(let line)? = event.value["line"] { lines.append(String(line)) } else { lines.append("") }
            if case .string(let raw)? = event.value["raw"] {
                raws.append(raw)
            } else {
                raws.append(event.value["event"]?.serializedString ?? event.value.serializedString)
            }
            positions.append(String(position))
        }
        let job = chunk.jobID.flatMap { SinkFunction.isUUID($0) ? $0 : nil }
        let parameters: [String?] = [
            job, PostgresArray.literal(functions), PostgresArray.literal(reasons), PostgresArray.literal(lines),
            PostgresArray.literal(raws), stream, chunk.identity, PostgresArray.literal(positions),
        ]
        do {
            try await pool.query("""
                INSERT INTO quarantine (job_id, function, reason, line, raw, stream, entry_id, position)
                SELECT $1::uuid, f, r, NULLIF(l, '')::integer, w, $6, $7, p::integer
                FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $8::text[]) AS t(f, r, l, w, p)
                ON CONFLICT (stream, entry_id, position) DO NOTHING
                """, parameters)
        } catch let error as PostgresError {
            throw FunctionError.retryable(error.code.rawValue, error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
        }
        return chunk.events.map { .forward($0) }
    }
}

/// Records the final state of jobs announced on the `jobs` stream in their PostgreSQL row:
/// `status`, `counts`, `error` and `finished_at`. A job already final keeps its status (an
/// announcement delivered twice, or late, changes nothing).
public struct JobRecorderFunction: EventFunction {
    let pool: PostgresPool

    public init(setup: FunctionSetup) throws {
        pool = try setup.resources.require(PostgresPool.self)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for event in chunk.events {
            guard case .string(let job)? = event.value["job_id"], SinkFunction.isUUID(job),
                  case .string(let status)? = event.value["status"], ["completed", "failed", "cancelled"].contains(status)
            else {
                outcomes.append(.quarantine(reason: "bad_job_event", event: event))
                continue
            }
            let finished: String? = event.value["finished_at"].flatMap { value -> String? in
                if case .int(let ms) = value { return String(ms) }
                if case .double(let ms) = value { return String(Int64(ms)) }
                return nil
            }
            do {
                try await pool.query("""
                    UPDATE jobs SET status = $2, counts = $3::jsonb, error = COALESCE($4, error),
                        finished_at = COALESCE(to_timestamp($5::bigint / 1000.0), finished_at, now()), updated_at = now()
                    WHERE id = $1::uuid AND (status IN ('received', 'processing') OR status = $2)
                    """, [job, status, event.value["counts"]?.serializedString ?? "{}", event.value["error"]?.stringValue, finished])
            } catch let error as PostgresError {
                throw FunctionError.retryable(error.code.rawValue, error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
            }
            outcomes.append(.drop(reason: "recorded"))
        }
        return outcomes
    }
}
