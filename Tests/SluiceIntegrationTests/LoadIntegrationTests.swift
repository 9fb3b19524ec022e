import Foundation
import Logging
import NIOPosix
import Sluice
import SluicePostgres
@testable import SluiceFunctions
import Testing

/// The load function into the real warehouse table.
@Suite("Load function", .serialized)
struct LoadIntegrationTests {
    @Test func loadsOnceWithLatencyColumns() async throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let pool = PostgresPool(url: url, threadPool: threadPool, maxConnections: 1)
        try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
        let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        try await DatasetStore(pool: pool).registerFiles(in: "\(root)/datasets", logger: Logger(label: "test"))
        let manifest = Manifest(name: "load", handler: "load", triggers: [.stream("load")])
        let invoker = FunctionInvoker(manifest: manifest, function: LoadFunction(pool: pool), logger: Logger(label: "test"))
        let job = UUID().uuidString.lowercased()
        let prefix = "load-\(UUID().uuidString.prefix(8))"
        let received: Int64 = 1_767_225_600_123  // 2026-01-01T00:00:00.123Z, in the past
        func row(_ n: Int, type: String = "login") -> Event {
            Event([
                "event_id": .string("\(prefix)-\(n)"), "event_type": .string(type), "event_time": "2026-11-23T11:59:00Z",
                "user_id": "u-1", "country": "DE", "country_name": "Germany", "properties": ["value": .int(Int64(n)), "note": "a \"q\", b"],
            ])
        }
        let chunkID = "\(Int.random(in: 1...1_000_000_000))-0"
        let chunk = Chunk(id: chunkID, jobID: job, events: [row(1), row(2), row(1, type: "again"), Event(["event_type": "x"])], receivedAt: received)
        let outcomes = try await invoker.invoke(chunk, attempt: 1)
        #expect(outcomes.map(\.kind) == [.forward, .forward, .drop, .quarantine])
        #expect(outcomes[2] == .drop(reason: "duplicate"))
        #expect(outcomes.last == .quarantine(reason: "missing_event_id", event: Event(["event_type": "x"]), field: "event_id"))
        let loaded = try await pool.query("""
            SELECT event_id, event_type, properties->>'note', properties->>'value', country_name,
                   to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'), loaded_at >= received_at
            FROM events WHERE job_id = \(job)::uuid ORDER BY event_id
            """)
        #expect(loaded.rows.count == 2)  // DISTINCT ON (event_id): one row for id 1
        #expect(loaded.rows.map { $0[0] } == ["\(prefix)-1", "\(prefix)-2"])
        #expect(loaded.rows[1] == ["\(prefix)-2", "login", "a \"q\", b", "2", "Germany", "2026-01-01T00:00:00.123", "t"])
        // Delivered again (a crash after the commit, before the ack): nothing is loaded twice.
        // The ledger answers the outcomes of the first delivery, not "duplicate" for everything.
        #expect(try await invoker.invoke(chunk, attempt: 2) == outcomes)
        #expect(try await pool.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid").scalar == "2")
        // It records the positions it loaded (0 and 1; 2 was a duplicate, 3 quarantined).
        #expect(try await pool.query("SELECT loaded, loaded_positions, erased_positions FROM load_ledger WHERE stream = 'load' AND chunk_id = \(chunkID)").rows
                == [["2", "{0,1}", "{}"]])
        // Another chunk holding a loaded id: that one is a duplicate, the new one loads.
        let later = Chunk(id: "\(Int.random(in: 1...1_000_000_000))-1", jobID: job, events: [row(2), row(5)], receivedAt: received)
        #expect(try await invoker.invoke(later, attempt: 1) == [.drop(reason: "duplicate"), .forward(row(5))])
        #expect(try await pool.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid").scalar == "3")
        // A chunk of a cancelled job is dropped and loads nothing.
        let cancelled = UUID().uuidString.lowercased()
        try await pool.query("INSERT INTO jobs (id, status) VALUES (\(cancelled)::uuid, 'cancelled')")
        let late = Chunk(id: "\(Int.random(in: 1...1_000_000_000))-2", jobID: cancelled, events: [row(6)], receivedAt: received)
        #expect(try await invoker.invoke(late, attempt: 1) == [.drop(reason: "cancelled")])
        #expect(try await pool.query("SELECT count(*) FROM events WHERE event_id = \("\(prefix)-6")").scalar == "0")
        // A value that does not fit its column is quarantined, naming why; the rest loads.
        let mistyped = Event(["event_id": .string("\(prefix)-4"), "event_time": "not-a-time"])
        let typed = Chunk(id: "\(Int.random(in: 1...1_000_000_000))-3", jobID: job, events: [row(3), mistyped], receivedAt: received)
        #expect(try await invoker.invoke(typed, attempt: 1) == [.forward(row(3)), .quarantine(reason: "invalid_timestamp", event: mistyped, field: "event_time")])
        #expect(try await pool.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid").scalar == "4")
        // A row the table refuses (text holding NUL) fails the chunk permanently and loads none of it.
        let bad = Chunk(id: "\(Int.random(in: 1...1_000_000_000))-4", jobID: job,
                        events: [row(7), Event(["event_id": .string("\(prefix)-8"), "event_type": "a\u{0}b"])], receivedAt: received)
        do {
            _ = try await invoker.invoke(bad, attempt: 1)
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .permanent)
            #expect(error.message.hasPrefix("SQLSTATE 22"))
        }
        #expect(try await pool.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid").scalar == "4")
        try await threadPool.shutdownGracefully()
    }

    @Test func postgresArrays() {
        let items = ["a", "b,c", "d\"e", "f\\g", "", "NULL x"]
        #expect((try? [String](postgresColumn: PostgresArray.literal(items))) == items)
        #expect((try? [String](postgresColumn: "{}")) == [])
        #expect((try? [String](postgresColumn: "{abc,\"d e\"}")) == ["abc", "d e"])
        #expect((try? [String?](postgresColumn: "{abc,NULL,\"NULL\"}")) == ["abc", nil, "NULL"])
        #expect((try? [String](postgresColumn: "{abc,NULL}")) == nil)
        #expect((try? [String](postgresColumn: "abc")) == nil)
    }

    @Test func timestampsForPostgres() {
        #expect(PipelineClock.timestamp(0) == "1970-01-01T00:00:00.000Z")
        #expect(PipelineClock.timestamp(1_795_435_200_123) == "2026-11-23T12:00:00.123Z")
        #expect(PipelineClock.timestamp(951_782_400_000) == "2000-02-29T00:00:00.000Z")
    }
}
