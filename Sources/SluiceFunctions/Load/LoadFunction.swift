import Sluice
import SluicePostgres

/// Loads warehouse rows (flat objects whose keys are column names, as transform makes them)
/// into the table `events`: COPY into a per-connection staging table, then
/// `INSERT … SELECT DISTINCT ON (event_id) … ON CONFLICT (event_id) DO NOTHING RETURNING`, in
/// one transaction, checking that COPY took every row; the chunk is acknowledged only after
/// the commit.
///
/// Outcomes: an inserted row is forwarded (and counts as `loaded` with `counts_as: loaded`);
/// a row whose `event_id` the warehouse already held is dropped as `duplicate`; a row without
/// an `event_id` is quarantined (`missing_event_id`). The transaction also writes a
/// `load_ledger` row with the chunk's duplicates, so that a chunk delivered again after a
/// crash between commit and acknowledgement answers the same outcomes and inserts nothing.
/// It first takes a share lock on the chunk's job row: the chunks of a job that was
/// cancelled or failed are dropped (`cancelled`, `job_failed`) and never loaded, and a job
/// that fails concurrently waits for this transaction and then deletes what it loaded.
///
/// Erased subjects are fenced in the same transaction: a row whose `user_id` is in `erasures`
/// is not loaded but dropped as `no_consent` when the event was received before the erasure,
/// or when no consent was granted to the subject after it (see ``ErasureFence``).
///
/// `job_id` and `received_at` come from the chunk; `loaded_at` is the database's clock at the
/// insert.
public struct LoadFunction: EventFunction {
    /// The columns loaded from a row (besides `job_id`, `received_at` and `loaded_at`), and
    /// whether each holds JSON.
    public static let columns: [(name: String, json: Bool)] = [
        ("event_id", false), ("event_type", false), ("event_time", false), ("user_id", false), ("session_id", false),
        ("source", false), ("version", false), ("device_type", false), ("device_class", false), ("os_version", false),
        ("app_version", false), ("country", false), ("country_name", false), ("region", false),
        ("properties", true), ("custom_data", true), ("attributes", true),
    ]

    let pool: PostgresPool
    let stream: String

    public init(setup: PipelineSetup) throws {
        pool = setup.dependencies.postgres
        stream = setup.manifest.inputStream ?? setup.manifest.name
    }

    public init(pool: PostgresPool, stream: String = "load") {
        self.pool = pool
        self.stream = stream
    }

    static let columnList = (columns.map(\.name) + ["job_id", "received_at"]).map { (name: String) -> PostgresQuery in "\(identifier: name)" }
        .joined(separator: ", ")

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome?] = Array(repeating: nil, count: chunk.events.count)
        var csv: [UInt8] = []
        csv.reserveCapacity(chunk.events.count * 400)
        var ids: [(position: Int, id: String)] = []
        let job = chunk.jobID.flatMap { SQLText.isUUID($0) ? $0 : nil }
        let received = PipelineClock.timestamp(chunk.receivedAt ?? PipelineClock.milliseconds())
        for (position, event) in chunk.events.enumerated() {
            guard case .string(let id)? = event.value["event_id"], !id.isEmpty else {
                outcomes[position] = .quarantine(reason: "missing_event_id", event: event)
                continue
            }
            for (index, column) in Self.columns.enumerated() {
                if index > 0 { csv.append(UInt8(ascii: ",")) }
                let value = event.value[column.name]
                switch value {
                case nil, .null?: break  // unquoted empty: NULL
                case .string(let text)? where !column.json: SQLText.appendCSV(text, to: &csv)
                case let other? where column.json: SQLText.appendCSV(other.serializedString, to: &csv)
                case let other?: SQLText.appendCSV(other.serializedString.trimmingQuotes(), to: &csv)
                }
            }
            csv.append(UInt8(ascii: ","))
            SQLText.appendCSV(job, to: &csv)
            csv.append(UInt8(ascii: ","))
            SQLText.appendCSV(received, to: &csv)
            csv.append(UInt8(ascii: "\n"))
            ids.append((position, id))
        }
        guard !ids.isEmpty else { return outcomes.map { $0! } }
        let data = csv, expected = ids.count, stream = self.stream, chunkKey = chunk.identity, idList = ids
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
                let recorded = try connection.query(
                    "SELECT duplicates, erased FROM load_ledger WHERE stream = \(stream) AND chunk_id = \(chunkKey)")
                if let row = recorded.first {
                    let (duplicates, erased) = try row.decode(([String], [String]).self)
                    return .recorded(duplicates: duplicates, erased: Set(erased))
                }
                try connection.executeUnparameterized("""
                    CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
                    """)
                let copied = try connection.copyIn("COPY events_staging (\(Self.columnList)) FROM STDIN (FORMAT csv)", data: [data])
                guard copied == expected else {
                    throw FunctionError.retryable("row_count_mismatch", "COPY took \(copied) rows of \(expected)")
                }
                let fenced = try connection.query("""
                    DELETE FROM events_staging s USING erasures e
                    WHERE s.user_id = e.subject AND \(ErasureFence.condition(received: "s.received_at"))
                    RETURNING s.event_id
                    """)
                let inserted = try connection.query("""
                    INSERT INTO events (\(Self.columnList))
                    SELECT DISTINCT ON (event_id) \(Self.columnList) FROM events_staging ORDER BY event_id
                    ON CONFLICT (event_id) DO NOTHING
                    RETURNING event_id
                    """)
                var fresh = Set(try inserted.decode(String.self))
                // An id whose every copy was fenced is erased; one that was also loaded (another
                // copy, of another user) is counted as usual.
                let erased = Set(try fenced.decode(String.self)).subtracting(fresh)
                var duplicates: [String] = []
                for (_, id) in idList where !erased.contains(id) && fresh.remove(id) == nil { duplicates.append(id) }
                try connection.query("""
                    INSERT INTO load_ledger (stream, chunk_id, loaded, duplicates, erased)
                    VALUES (\(stream), \(chunkKey), \(inserted.count)::integer, \(duplicates)::text[], \(erased.sorted())::text[])
                    """)
                return .inserted(duplicates: duplicates, erased: erased)
            }
        } catch let error as PostgresError {
            // A row the table refuses (a bad timestamp, say) fails the whole COPY: retrying cannot
            // help, and the chunk's events are kept whole in the dead-letter stream.
            let permanent = error.sqlState.map { $0.hasPrefix("22") || $0.hasPrefix("23") } ?? false
            throw FunctionError(permanent ? .permanent : .retryable, code: error.code.rawValue,
                                message: error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
        }
        switch verdict {
        case .jobEnded(let reason):
            return chunk.events.map { _ in .drop(reason: reason) }
        case .inserted(let duplicates, let erased), .recorded(let duplicates, let erased):
            // The duplicates list names an id once per surplus occurrence, in chunk order.
            var surplus: [String: Int] = [:]
            for id in duplicates { surplus[id, default: 0] += 1 }
            var seen: Set<String> = []
            let total = Dictionary(ids.map { ($0.id, 1) }, uniquingKeysWith: +)
            for (position, id) in ids {
                if erased.contains(id) {
                    outcomes[position] = .drop(reason: "no_consent")
                    continue
                }
                // Of the occurrences of an id, the last `surplus` ones are duplicates.
                let first = seen.insert(id).inserted
                let loadedOccurrences = total[id]! - surplus[id, default: 0]
                if first && loadedOccurrences > 0 {
                    outcomes[position] = .forward(chunk.events[position])
                } else {
                    outcomes[position] = .drop(reason: "duplicate")
                }
            }
            return outcomes.map { $0! }
        }
    }

    /// Deletes the rows job `jobID` loaded (the job failed: nothing of it stays).
    static func discardRows(ofJob jobID: String, on connection: PostgresConnection) throws {
        try connection.query("DELETE FROM events WHERE job_id = \(jobID)::uuid")
    }

    enum LoadVerdict: Sendable {
        case jobEnded(String)
        case inserted(duplicates: [String], erased: Set<String>)
        case recorded(duplicates: [String], erased: Set<String>)
    }
}

extension String {
    func trimmingQuotes() -> String {
        hasPrefix("\"") && hasSuffix("\"") && count >= 2 ? String(dropFirst().dropLast()) : self
    }
}
