import Sluice
import SluicePostgres

/// Loads warehouse rows (flat objects whose keys are column names, as transform makes them)
/// into the table `events`: COPY into a per-connection staging table, then
/// `INSERT … SELECT DISTINCT ON (event_id) … ON CONFLICT (event_id) DO NOTHING`, in one
/// transaction, checking that COPY took every row; the chunk is acknowledged only after the
/// commit. A chunk delivered again after a crash inserts nothing a second time.
///
/// `job_id` and `received_at` come from the chunk; `loaded_at` is the database's clock at the
/// insert. A row without an `event_id` cannot be loaded and is quarantined (`missing_event_id`).
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

    public init(setup: FunctionSetup) throws {
        pool = try setup.resources.require(PostgresPool.self)
    }

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    static let columnList = (columns.map(\.name) + ["job_id", "received_at"]).joined(separator: ", ")

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(chunk.events.count)
        var csv: [UInt8] = []
        csv.reserveCapacity(chunk.events.count * 400)
        var rows = 0
        let job = chunk.jobID.flatMap { SinkFunction.isUUID($0) ? $0 : nil }
        let received = Self.timestamp(chunk.receivedAt ?? ValidateFunction.systemMilliseconds())
        for event in chunk.events {
            guard case .string(let id)? = event.value["event_id"], !id.isEmpty else {
                outcomes.append(.quarantine(reason: "missing_event_id", event: event))
                continue
            }
            for (index, column) in Self.columns.enumerated() {
                if index > 0 { csv.append(UInt8(ascii: ",")) }
                let value = event.value[column.name]
                switch value {
                case nil, .null?: break  // unquoted empty: NULL
                case .string(let text)? where !column.json: SinkFunction.appendCSV(text, to: &csv)
                case let other? where column.json: SinkFunction.appendCSV(other.serializedString, to: &csv)
                case let other?: SinkFunction.appendCSV(other.serializedString.trimmingQuotes(), to: &csv)
                }
            }
            csv.append(UInt8(ascii: ","))
            SinkFunction.appendCSV(job, to: &csv)
            csv.append(UInt8(ascii: ","))
            SinkFunction.appendCSV(received, to: &csv)
            csv.append(UInt8(ascii: "\n"))
            rows += 1
            outcomes.append(.forward(event))
        }
        guard rows > 0 else { return outcomes }
        let data = csv, expected = rows
        do {
            try await pool.withTransaction { connection in
                try connection.executeUnparameterized("""
                    CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
                    """)
                let copied = try connection.copyIn("COPY events_staging (\(Self.columnList)) FROM STDIN (FORMAT csv)", data: [data])
                guard copied == expected else {
                    throw FunctionError.retryable("row_count_mismatch", "COPY took \(copied) rows of \(expected)")
                }
                try connection.query("""
                    INSERT INTO events (\(Self.columnList))
                    SELECT DISTINCT ON (event_id) \(Self.columnList) FROM events_staging ORDER BY event_id
                    ON CONFLICT (event_id) DO NOTHING
                    """)
            }
        } catch let error as PostgresError {
            // A row the table refuses (a bad timestamp, say) fails the whole COPY: retrying cannot
            // help, and the chunk's events are kept whole in the dead-letter stream.
            let permanent = error.sqlState.map { $0.hasPrefix("22") || $0.hasPrefix("23") } ?? false
            throw FunctionError(permanent ? .permanent : .retryable, code: error.code.rawValue,
                                message: error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
        }
        return outcomes
    }

    /// Unix milliseconds as an ISO 8601 UTC timestamp PostgreSQL reads.
    static func timestamp(_ milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000, millis = milliseconds % 1000
        let days = Int(seconds / 86_400), secondOfDay = Int(seconds % 86_400)
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(Int(millis), 3))Z"
    }

    /// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
    static func civil(fromDays z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

extension String {
    func trimmingQuotes() -> String {
        hasPrefix("\"") && hasSuffix("\"") && count >= 2 ? String(dropFirst().dropLast()) : self
    }
}
