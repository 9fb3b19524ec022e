import Sluice
import SluicePostgres

/// Writes every event of a chunk to `sink_events` and records the chunk in `sink_chunks`, in
/// one transaction: a chunk delivered again after a crash finds its ledger row and writes
/// nothing, so each event is written exactly once in effect. Forwards the events (to no
/// output, normally: it is a sink).
public struct SinkFunction: EventFunction {
    let name: String
    let pool: PostgresPool
    /// The input stream's key: entry ids are unique within one stream only.
    let stream: String

    public init(setup: PipelineSetup) throws {
        name = setup.manifest.name
        pool = setup.dependencies.postgres
        let keys = setup.dependencies.keys
        stream = keys.stream(setup.manifest.inputStream ?? setup.manifest.name)
    }

    /// The sink's own tables, test-only and so not in the pipeline's schema: created by the
    /// function when it starts (``createTables()``).
    static let tables: StaticString = """
            -- Rows written by this function, which proves the runtime: no unique key on
            -- event_id, so that a duplicate delivery would show as a second row.
            CREATE TABLE IF NOT EXISTS sink_events (
                job_id     uuid,
                event_id   text,
                event      jsonb NOT NULL,
                chunk_id   text NOT NULL,
                loaded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            CREATE INDEX IF NOT EXISTS sink_events_job ON sink_events (job_id);
            -- One row per input chunk written, in the same transaction as its rows: a chunk
            -- delivered again after a crash finds its row and writes nothing. Stream entry
            -- ids are unique per stream only, so the key holds the stream as well.
            CREATE TABLE IF NOT EXISTS sink_chunks (
                function   text NOT NULL,
                stream     text NOT NULL,
                chunk_id   text NOT NULL,
                rows       integer NOT NULL,
                written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (function, stream, chunk_id)
            );
        """

    /// Creates the sink's tables unless they exist, under a transaction-scoped advisory lock
    /// (replicas starting together would otherwise race on the catalog).
    public func createTables() async throws {
        try await pool.withTransaction { connection in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext('sluice.sink'))")
            try connection.executeUnparameterized(Self.tables)
        }
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let name = self.name, stream = self.stream
        var csv: [UInt8] = []
        csv.reserveCapacity(chunk.events.count * 600)
        let job = chunk.jobID.flatMap { SQLText.isUUID($0) ? $0 : nil }
        for event in chunk.events {
            SQLText.appendCSV(job, to: &csv)
            csv.append(UInt8(ascii: ","))
            SQLText.appendCSV(event.id, to: &csv)
            csv.append(UInt8(ascii: ","))
            SQLText.appendCSV(event.value.serializedString, to: &csv)
            csv.append(UInt8(ascii: ","))
            SQLText.appendCSV(chunk.id, to: &csv)
            csv.append(UInt8(ascii: "\n"))
        }
        let rows = chunk.events.count
        let chunkID = chunk.identity  // a redriven chunk keeps its ledger row
        let data = csv
        do {
            try await pool.withTransaction { connection in
                let claimed = try connection.query(
                    "INSERT INTO sink_chunks (function, stream, chunk_id, rows) VALUES (\(name), \(stream), \(chunkID), \(rows)) ON CONFLICT DO NOTHING")
                guard claimed.affected == 1 else { return }  // written before this delivery
                let copied = try connection.copyIn(
                    "COPY sink_events (job_id, event_id, event, chunk_id) FROM STDIN (FORMAT csv)", data: [data])
                guard copied == rows else {
                    throw FunctionError.retryable("row_count_mismatch", "copied \(copied) rows of \(rows)")
                }
            }
        } catch let error as PostgresError {
            throw FunctionError.retryable(error.code.rawValue, error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
        }
        return chunk.events.map { .forward($0) }
    }
}
