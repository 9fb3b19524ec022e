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

    public init(setup: FunctionSetup) throws {
        name = setup.manifest.name
        pool = try setup.resources.require(PostgresPool.self)
        let keys = setup.resources.get(StreamKeys.self) ?? StreamKeys()
        stream = keys.stream(setup.manifest.inputStream ?? setup.manifest.name)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let name = self.name, stream = self.stream
        var csv: [UInt8] = []
        csv.reserveCapacity(chunk.events.count * 600)
        let job = chunk.jobID.flatMap { Self.isUUID($0) ? $0 : nil }
        for event in chunk.events {
            Self.appendCSV(job, to: &csv)
            csv.append(UInt8(ascii: ","))
            Self.appendCSV(event.id, to: &csv)
            csv.append(UInt8(ascii: ","))
            Self.appendCSV(event.value.serializedString, to: &csv)
            csv.append(UInt8(ascii: ","))
            Self.appendCSV(chunk.id, to: &csv)
            csv.append(UInt8(ascii: "\n"))
        }
        let rows = chunk.events.count
        let chunkID = chunk.identity  // a redriven chunk keeps its ledger row
        let data = csv
        do {
            try await pool.withTransaction { connection in
                let claimed = try connection.query(
                    "INSERT INTO sink_chunks (function, stream, chunk_id, rows) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    [name, stream, chunkID, String(rows)])
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

    static func appendCSV(_ value: String?, to buffer: inout [UInt8]) {
        guard let value else { return }  // unquoted empty field: NULL
        buffer.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            if byte == UInt8(ascii: "\"") { buffer.append(byte) }
            buffer.append(byte)
        }
        buffer.append(UInt8(ascii: "\""))
    }

    static func isUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) { if b != UInt8(ascii: "-") { return false } }
            else if !((48...57).contains(b) || (97...102).contains(b) || (65...70).contains(b)) { return false }
        }
        return true
    }
}
