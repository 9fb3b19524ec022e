import Sluice
import SluicePostgres

/// Loads rows (flat objects whose keys are column names, as transform makes them) into the
/// table of the chunk's dataset (``DatasetSpec``; `events` when the chunk names none): COPY into
/// a per-connection staging table, then `INSERT … SELECT DISTINCT ON (key) … ON CONFLICT (key)
/// DO NOTHING`, in one transaction, checking that COPY took every row; the chunk is
/// acknowledged only after the commit.
///
/// Outcomes: an inserted row is forwarded (and counts as `loaded` with `counts_as: loaded`);
/// a row whose key the table already held (or that came earlier in the chunk) is dropped as
/// `duplicate`; a row without its key is quarantined (`missing_<column>` for a one-column
/// key, such as `missing_event_id`, else `missing_key`), and one whose value does not fit its
/// column as `wrong_type` or `invalid_timestamp`, naming the column. The transaction also writes
/// a `load_ledger` row with the positions it loaded and fenced, so that a chunk delivered
/// again after a crash between commit and acknowledgement answers the same outcomes and
/// inserts nothing. It first takes a share lock on the chunk's job row: the chunks of a job
/// that was cancelled or failed are dropped (`cancelled`, `job_failed`) and never loaded, and a
/// job that fails concurrently waits for this transaction and then deletes what it loaded.
///
/// Erased subjects are fenced in the same transaction: a row whose subject column (the column
/// of the dataset's `subject` field) is in `erasures` is not loaded but dropped as
/// `no_consent` when the record was received before the erasure, or when no consent was
/// granted to the subject after it (see ``ErasureFence``).
///
/// `job_id` and `received_at` come from the chunk; `loaded_at` is the database's clock at the
/// insert.
public struct LoadFunction: EventFunction {
    /// Each dataset version's statements, built once.
    let plans: PerDataset<LoadPlan>
    let pool: PostgresPool
    let stream: String

    public init(setup: PipelineSetup) throws {
        pool = setup.dependencies.postgres
        plans = PerDataset(datasets: setup.dependencies.datasets) { LoadPlan($0, version: $1) }
        stream = setup.manifest.inputStream ?? setup.manifest.name
    }

    public init(pool: PostgresPool, stream: String = "load") {
        self.pool = pool
        plans = PerDataset(datasets: DatasetStore(pool: pool)) { LoadPlan($0, version: $1) }
        self.stream = stream
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let plan = try await plans.plan(for: chunk)
        var outcomes: [Outcome?] = Array(repeating: nil, count: chunk.events.count)
        var csv: [UInt8] = []
        csv.reserveCapacity(chunk.events.count * 400)
        var positions: [Int] = []
        let job = chunk.jobID.flatMap { SQLText.isUUID($0) ? $0 : nil }
        let received = PipelineClock.timestamp(chunk.receivedAt ?? PipelineClock.milliseconds())
        for (position, event) in chunk.events.enumerated() {
            if let refusal = plan.appendRow(event.value, position: position, job: job, received: received, to: &csv) {
                outcomes[position] = .quarantine(reason: refusal.reason, event: event, field: refusal.column)
            } else {
                positions.append(position)
            }
        }
        guard !positions.isEmpty else { return outcomes.map { $0! } }
        let data = csv, expected = positions.count, stream = self.stream, chunkKey = chunk.identity
        let verdict: LoadVerdict
        do {
            verdict = try await pool.withTransaction { connection in
                try ErasureFence.enter(on: connection)
                if let job {
                    switch try JobStore.statusForLoading(job, on: connection) {
                    case .cancelled?: return .jobEnded("cancelled")
                    case .failed?: return .jobEnded("job_failed")
                    default: break
                    }
                }
                let recorded = try connection.query("""
                    SELECT loaded_positions, erased_positions, duplicates, erased FROM load_ledger WHERE stream = \(stream) AND chunk_id = \(chunkKey)
                    """)
                if let row = recorded.first {
                    let (loaded, erased, duplicates, erasedIDs) = try row.decode(([Int]?, [Int]?, [String], [String]).self)
                    if let loaded, let erased { return .recorded(loaded: Set(loaded), erased: Set(erased)) }
                    return .recordedByID(duplicates: duplicates, erased: Set(erasedIDs))
                }
                try connection.query(plan.createStaging)
                let copied = try connection.copyIn(plan.copy, data: [data])
                guard copied == expected else {
                    throw FunctionError.retryable("row_count_mismatch", "COPY took \(copied) rows of \(expected)")
                }
                var erased: [Int] = []
                if let fence = plan.fence { erased = try connection.query(fence).decode(Int.self) }
                let loaded = try connection.query(plan.insert).decode(Int.self)
                try connection.query("""
                    INSERT INTO load_ledger (stream, chunk_id, loaded, loaded_positions, erased_positions)
                    VALUES (\(stream), \(chunkKey), \(loaded.count)::integer, \(loaded.sorted())::integer[], \(erased.sorted())::integer[])
                    """)
                return .inserted(loaded: Set(loaded), erased: Set(erased))
            }
        } catch let error as PostgresError {
            // A row the table refuses fails the whole COPY: retrying cannot help, and the
            // chunk's events are kept whole in the dead-letter stream.
            let permanent = error.sqlState.map { $0.hasPrefix("22") || $0.hasPrefix("23") } ?? false
            throw FunctionError(permanent ? .permanent : .retryable, code: error.code.rawValue,
                                message: error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
        }
        switch verdict {
        case .jobEnded(let reason):
            return chunk.events.map { _ in .drop(reason: reason) }
        case .inserted(let loaded, let erased), .recorded(let loaded, let erased):
            for position in positions {
                if erased.contains(position) {
                    outcomes[position] = .drop(reason: "no_consent")
                } else if loaded.contains(position) {
                    outcomes[position] = .forward(chunk.events[position])
                } else {
                    outcomes[position] = .drop(reason: "duplicate")
                }
            }
            return outcomes.map { $0! }
        case .recordedByID(let duplicates, let erased):
            // A ledger row written before positions were recorded (single-column keys only).
            let ids = positions.map { (position: $0, id: plan.keyText(chunk.events[$0].value)) }
            var surplus: [String: Int] = [:]
            for id in duplicates { surplus[id, default: 0] += 1 }
            var seen: Set<String> = []
            let total = Dictionary(ids.map { ($0.id, 1) }, uniquingKeysWith: +)
            for (position, id) in ids {
                if erased.contains(id) {
                    outcomes[position] = .drop(reason: "no_consent")
                    continue
                }
                let first = seen.insert(id).inserted
                outcomes[position] = first && total[id]! - surplus[id, default: 0] > 0 ? .forward(chunk.events[position]) : .drop(reason: "duplicate")
            }
            return outcomes.map { $0! }
        }
    }

    /// Deletes the rows job `jobID` loaded (the job failed: nothing of it stays), from its
    /// dataset's table.
    static func discardRows(ofJob jobID: String, on connection: PostgresConnection) throws {
        let name = try connection.query("SELECT COALESCE(dataset, 'events') FROM jobs WHERE id = \(jobID)::uuid").scalar(String.self) ?? DatasetReference.events
        guard let stored = try DatasetStore.read(name, on: connection) else { return }
        try connection.query("DELETE FROM \(DatasetStore.table(stored.spec)) WHERE job_id = \(jobID)::uuid")
    }

    enum LoadVerdict: Sendable {
        case jobEnded(String)
        case inserted(loaded: Set<Int>, erased: Set<Int>)
        case recorded(loaded: Set<Int>, erased: Set<Int>)
        case recordedByID(duplicates: [String], erased: Set<String>)
    }
}

/// How the rows of one version of a dataset are written: the statements, and each row's CSV.
struct LoadPlan: Sendable {
    let spec: DatasetSpec
    let createStaging: PostgresQuery
    let copy: PostgresQuery
    let fence: PostgresQuery?
    let insert: PostgresQuery

    init(_ spec: DatasetSpec, version: Int) {
        self.spec = spec
        let table = DatasetStore.table(spec)
        let staging = "sluice_staging_" + String(SHA256.hex(Array("\(spec.table)@\(version)".utf8)).prefix(16))
        let names = spec.columns.map(\.name) + ["job_id", "received_at"]
        let columns = names.map { (name: String) -> PostgresQuery in "\(identifier: name)" }.joined(separator: ", ")
        let key = spec.key.map { (name: String) -> PostgresQuery in "\(identifier: name)" }.joined(separator: ", ")
        createStaging = """
            CREATE TEMP TABLE IF NOT EXISTS \(identifier: staging) (LIKE \(table) INCLUDING DEFAULTS, sluice_position integer NOT NULL) ON COMMIT DELETE ROWS
            """
        copy = "COPY \(identifier: staging) (\(columns), sluice_position) FROM STDIN (FORMAT csv)"
        if let subject = spec.subject.flatMap({ spec.field(at: $0)?.column }) {
            fence = """
                DELETE FROM \(identifier: staging) s USING erasures e
                WHERE s.\(identifier: subject) = e.subject AND \(ErasureFence.condition(received: "s.received_at"))
                RETURNING s.sluice_position
                """
        } else {
            fence = nil
        }
        // The first row of each key not yet in the table is inserted; the answer is the position
        // of each inserted row.
        insert = """
            WITH inserted AS (
                INSERT INTO \(table) (\(columns))
                SELECT DISTINCT ON (\(key)) \(columns) FROM \(identifier: staging) ORDER BY \(key), sluice_position
                ON CONFLICT (\(key)) DO NOTHING
                RETURNING \(key))
            SELECT min(s.sluice_position) FROM \(identifier: staging) s JOIN inserted USING (\(key)) GROUP BY \(key)
            """
    }

    /// Appends the CSV line of `row` at `position`; answers the quarantine reason instead when
    /// the row lacks its key or a value does not fit its column (nothing is appended then).
    func appendRow(_ row: JSONValue, position: Int, job: String?, received: String, to csv: inout [UInt8]) -> (reason: String, column: String?)? {
        guard case .object(let object) = row else { return ("wrong_type", nil) }
        for name in spec.key {
            switch object[name] {
            case nil, .null?, .string("")?: return (spec.key.count == 1 ? "missing_\(name)" : "missing_key", name)
            default: continue
            }
        }
        let start = csv.count
        for (index, column) in spec.columns.enumerated() {
            if index > 0 { csv.append(UInt8(ascii: ",")) }
            guard let value = object[column.name], value != .null else { continue }  // unquoted empty: NULL
            if let refusal = Self.append(value, as: column.type, to: &csv) {
                csv.removeSubrange(start...)
                return (refusal, column.name)
            }
        }
        csv.append(UInt8(ascii: ","))
        SQLText.appendCSV(job, to: &csv)
        csv.append(UInt8(ascii: ","))
        SQLText.appendCSV(received, to: &csv)
        csv.append(UInt8(ascii: ","))
        csv.append(contentsOf: String(position).utf8)
        csv.append(UInt8(ascii: "\n"))
        return nil
    }

    /// Appends `value` as a CSV field of a column of `type`; the quarantine reason when it does
    /// not fit. A text column takes any scalar as its text (as JSON writes it).
    static func append(_ value: JSONValue, as type: DatasetSpec.FieldType, to csv: inout [UInt8]) -> String? {
        switch (type, value) {
        case (.string, .string(let text)): SQLText.appendCSV(text, to: &csv)
        case (.string, .object), (.string, .array): return "wrong_type"
        case (.string, _): SQLText.appendCSV(value.serializedString.trimmingQuotes(), to: &csv)
        case (.integer, .int), (.number, .int), (.number, .double), (.boolean, .bool):
            csv.append(contentsOf: value.serializedString.utf8)
        case (.timestamp, .string(let text)):
            guard Timestamp.milliseconds(text) != nil else { return "invalid_timestamp" }
            SQLText.appendCSV(text, to: &csv)
        case (.object, .object), (.array, .array), (.json, _):
            SQLText.appendCSV(value.serializedString, to: &csv)
        default:
            return "wrong_type"
        }
        return nil
    }

    /// A row's key as text (the legacy ledger's form: a one-column key's value).
    func keyText(_ row: JSONValue) -> String {
        spec.key.map { name in
            switch row[name] {
            case .string(let text)?: text
            case let other?: other.serializedString
            case nil: ""
            }
        }.joined(separator: "\u{1F}")
    }
}

extension String {
    func trimmingQuotes() -> String {
        hasPrefix("\"") && hasSuffix("\"") && count >= 2 ? String(dropFirst().dropLast()) : self
    }
}
