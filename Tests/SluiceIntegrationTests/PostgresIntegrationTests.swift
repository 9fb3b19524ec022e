import Foundation
import Logging
import NIOPosix
import Sluice
import SluiceFunctions
import SluicePostgres
import Testing

/// The PostgreSQL adapter against a real server (`make test` provides SLUICE_DATABASE_URL).
@Suite("PostgreSQL adapter", .serialized)
struct PostgresIntegrationTests {
    let threadPool: NIOThreadPool
    let pool: PostgresPool

    init() throws {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        pool = PostgresPool(url: url, threadPool: threadPool, maxConnections: 2)
    }

    @Test func boundParametersAreNeverSQL() async throws {
        let hostile = "x'); DROP TABLE jobs; --"
        let rows = try await pool.query("SELECT \(hostile)::text AS v, \("41")::int + 1 AS n, \(nil as String?)::text IS NULL AS isnull")
        #expect(rows.columns == ["v", "n", "isnull"])
        #expect(rows[0, "v"] == hostile)
        #expect(rows[0, "n"] == "42")
        #expect(rows[0, "isnull"] == "t")
    }

    @Test func errorsCarrySQLState() async throws {
        do {
            try await pool.query("SELECT 1/0")
            Issue.record("expected an error")
        } catch let error as PostgresError {
            #expect(error.code == .statement)
            #expect(error.sqlState == "22012")
        }
        // The connection is still usable afterwards.
        #expect(try await pool.query("SELECT 2").scalar == "2")
    }

    @Test func transactionRollsBackWhenTheBodyThrows() async throws {
        let table = "t_\(UInt32.random(in: 0...UInt32.max))"
        try await pool.withConnection { try $0.query("CREATE TABLE \(identifier: table) (v int)") }
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await pool.withTransaction { connection in
                try connection.query("INSERT INTO \(identifier: table) VALUES (1)")
                throw Boom()
            }
        }
        try await pool.withTransaction { try $0.query("INSERT INTO \(identifier: table) VALUES (2)") }
        #expect(try await pool.query("SELECT string_agg(v::text, ',') FROM \(identifier: table)").scalar == "2")
        try await pool.withConnection { try $0.query("DROP TABLE \(identifier: table)") }
    }

    @Test func copyInCountsRowsAndRejectsBadData() async throws {
        let table = "c_\(UInt32.random(in: 0...UInt32.max))"
        try await pool.withConnection { try $0.query("CREATE TABLE \(identifier: table) (id int, body text)") }
        var csv = [UInt8]()
        for i in 0..<20_000 { csv.append(contentsOf: "\(i),\"row \(i), with \"\"quotes\"\"\"\n".utf8) }
        let data = csv
        let copied = try await pool.withConnection { try $0.copyIn("COPY \(identifier: table) FROM STDIN (FORMAT csv)", data: [data]) }
        #expect(copied == 20_000)
        #expect(try await pool.query("SELECT body FROM \(identifier: table) WHERE id = 7").scalar == "row 7, with \"quotes\"")
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { try $0.copyIn("COPY \(identifier: table) FROM STDIN (FORMAT csv)", data: [Array("x,y\n".utf8)]) }
        }
        #expect(try await pool.query("SELECT count(*) FROM \(identifier: table)").scalar == "20000")
        try await pool.withConnection { try $0.query("DROP TABLE \(identifier: table)") }
    }

    @Test func poolLimitsConnectionsAndServesWaiters() async throws {
        let started = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<10 {
                group.addTask { try await pool.query("SELECT pg_sleep(0.05), \(i)::int * 2").rows[0][1] }
            }
            return try await group.reduce(into: [String]()) { $0.append($1 ?? "") }
        }
        #expect(results.sorted { Int($0)! < Int($1)! } == (0..<10).map { String($0 * 2) })
        // Ten 50 ms queries over at most two connections take at least five rounds.
        #expect(ContinuousClock.now - started >= .milliseconds(250))
    }

    @Test func migrationsAreIdempotent() async throws {
        let migrator = Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test"))
        try await migrator.migrate()
        #expect(try await migrator.migrate() == [])
        #expect(try await migrator.isCurrent())
    }
}
