import Sluice
import SluicePostgres
import SluicePrivacy

/// Writes the quarantine stream into the `quarantine` table. Each entry holds items
/// `{"reason", "function", "event"}` (from a stage's quarantine outcome) or
/// `{"reason", "function", "line", "raw"}` (a record of an upload that did not parse).
/// `(stream, entry, position)` is unique, so an entry delivered again writes nothing twice.
/// With `counts_as: quarantined` the job counts an event as quarantined only once its row is
/// in PostgreSQL.
///
/// Each row's `subject` is the pseudonym of the event's user id (at the manifest's
/// `config.pii.user_fields`, by default `event.user.id` and `event.user_id`; for a record that
/// did not parse, at `user.id` or `user_id` of its text when that is a JSON object), so that an
/// erasure finds it by equality; `NULL` when there is none. Events of an erased subject are
/// fenced like load's (``ErasureFence``): not stored, dropped as `no_consent`.
public struct QuarantineFunction: EventFunction {
    let pool: PostgresPool
    let stream: String
    /// The user fields of the items, and the pseudonyms of their ids (`nil` without `pii-mask`:
    /// then only ids that are pseudonyms already are recorded).
    let mask: PIIMaskMiddleware?
    let userFields: [JSONPath]
    let datasets: DatasetStore

    public init(setup: PipelineSetup) throws {
        pool = setup.dependencies.postgres
        datasets = setup.dependencies.datasets
        stream = setup.manifest.inputStream ?? setup.manifest.name
        if setup.manifest.middleware.contains("pii-mask") {
            let mask = try PIIMaskMiddleware(manifest: setup.manifest, pseudonymKey: setup.configuration.pseudonymKey)
            self.mask = mask
            userFields = setup.manifest.config["pii"]?["user_fields"] == nil ? Self.defaultUserFields : mask.userFields
        } else {
            mask = nil
            userFields = Self.defaultUserFields
        }
    }

    static let defaultUserFields = [JSONPath("event.user.id"), JSONPath("event.user_id")]

    /// The pseudonym of the subject of one quarantine item, or `nil`: at the dataset's subject
    /// field (`datasetSubject`) first, then at the user fields.
    func subject(of item: JSONValue, datasetSubject: String? = nil) -> String? {
        var paths = (datasetSubject.map { [JSONPath("event.\($0)")] } ?? []) + userFields
        var value = item
        if case .string(let raw)? = item["raw"] {
            // A record that did not parse as an event may still be a JSON object (too long, say).
            guard raw.utf8.first == UInt8(ascii: "{"), let parsed = try? JSONParser().parse(raw), case .object = parsed else { return nil }
            value = parsed
            paths = (datasetSubject.map { [JSONPath($0)] } ?? []) + [JSONPath("user.id"), JSONPath("user_id")]
        }
        for path in paths {
            guard let id = value.value(at: path).flatMap(PIIMaskMiddleware.userID), !id.isEmpty else { continue }
            if PIIMasker.isPseudonymousUserID(id) { return id }
            if let mask { return mask.pseudonym(of: id) }
        }
        return nil
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        // A dataset no longer in the catalog still has its records kept (by the user fields).
        let datasetSubject = (try? await datasets.spec(chunk.datasetName, atLeast: chunk.dataset?.version))?.spec.subject
        var functions: [String] = [], reasons: [String] = [], lines: [Int64?] = [], raws: [String] = [], positions: [Int] = []
        var fields: [String?] = []
        var subjects: [String?] = []
        for (position, event) in chunk.events.enumerated() {
            functions.append(event.value["function"]?.stringValue ?? "unknown")
            reasons.append(event.value["reason"]?.stringValue ?? "unknown")
            fields.append(event.value["field"]?.stringValue)
            if case .int(let line)? = event.value["line"] { lines.append(line) } else { lines.append(nil) }
            if case .string(let raw)? = event.value["raw"] {
                raws.append(raw)
            } else {
                raws.append(event.value["event"]?.serializedString ?? event.value.serializedString)
            }
            positions.append(position)
            subjects.append(subject(of: event.value, datasetSubject: datasetSubject))
        }
        let job = chunk.jobID.flatMap { SQLText.isUUID($0) ? $0 : nil }
        let received = PipelineClock.timestamp(chunk.receivedAt ?? PipelineClock.milliseconds())
        let stream = self.stream, entry = chunk.identity
        let statement: PostgresQuery = """
            WITH items AS (
                SELECT f, r, l, w, p, s, d
                FROM unnest(\(functions)::text[], \(reasons)::text[], \(lines)::integer[], \(raws)::text[],
                            \(positions)::integer[], \(subjects)::text[], \(fields)::text[]) AS t(f, r, l, w, p, s, d)
            ), fenced AS (
                SELECT p FROM items JOIN erasures e ON e.subject = items.s
                WHERE \(ErasureFence.condition(received: "\(received)::timestamptz"))
            ), written AS (
                INSERT INTO quarantine (job_id, function, reason, line, raw, stream, entry_id, position, subject, field, dataset)
                SELECT \(job)::uuid, f, r, l, w, \(stream), \(entry), p, s, d, \(chunk.datasetName)
                FROM items WHERE p NOT IN (SELECT p FROM fenced)
                ON CONFLICT (stream, entry_id, position) DO NOTHING
            )
            SELECT p FROM fenced
            """
        let fenced: Set<Int>
        do {
            fenced = try await pool.withTransaction { connection in
                try ErasureFence.enter(on: connection)
                let rows = try connection.query(statement)
                return Set(try rows.decode(Int.self))
            }
        } catch let error as PostgresError {
            throw FunctionError.retryable(error.code.rawValue, error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
        }
        return chunk.events.enumerated().map { position, event in
            fenced.contains(position) ? .drop(reason: "no_consent") : .forward(event)
        }
    }
}

/// Records the final state of jobs announced on the `jobs` stream in their PostgreSQL row:
/// `status`, `counts`, `error` and `finished_at`. A job already final keeps its status (an
/// announcement delivered twice, or late, changes nothing).
public struct JobRecorderFunction: EventFunction {
    let pool: PostgresPool

    public init(setup: PipelineSetup) throws {
        pool = setup.dependencies.postgres
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        for event in chunk.events {
            guard case .string(let job)? = event.value["job_id"], SQLText.isUUID(job),
                  let status = event.value["status"]?.stringValue.flatMap(JobStatus.init(rawValue:)), !status.isOpen
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
                try await JobStore.recordEnd(job, status: status, counts: event.value["counts"]?.serializedString ?? "{}",
                                             error: event.value["error"]?.stringValue, finishedAtMilliseconds: finished, pool: pool)
            } catch let error as PostgresError {
                throw FunctionError.retryable(error.code.rawValue, error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
            }
            outcomes.append(.drop(reason: "recorded"))
        }
        return outcomes
    }
}
