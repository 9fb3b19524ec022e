import Foundation
import Logging
import NIOPosix
import Sluice
import SluicePostgres
@testable import SluiceFunctions
import Testing

/// The audit writer's group commit against real PostgreSQL: every concurrent caller returns
/// only once its row is committed, concurrent rows share INSERTs, and a failing database fails
/// every waiting caller.
@Suite("Audit writer", .serialized)
struct AuditWriterIntegrationTests {
    @Test(.timeLimit(.minutes(1))) func concurrentWritesAllCommitAndFailuresReachEveryCaller() async throws {
        guard let databaseURL = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 4)
        threadPool.start()
        let pool = PostgresPool(url: databaseURL, threadPool: threadPool, maxConnections: 2)
        try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
        let actor = "writer-test-\(UUID().uuidString)"
        let writer = AuditWriter(pool: pool, batch: 50)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<300 {
                group.addTask {
                    try await writer.write(AuditEntry(actor: actor, action: "test", resource: "r/\(index)", status: 200))
                    // Committed when write returns: visible to another connection.
                    let seen = try await pool.query("SELECT count(*) FROM audit_log WHERE actor = \(actor) AND resource = \("r/\(index)")")
                    #expect(seen.scalar == "1")
                }
            }
            try await group.waitForAll()
        }
        let rows = try await pool.query("SELECT count(*), count(DISTINCT resource) FROM audit_log WHERE actor = \(actor)")
        #expect(rows.rows.first == ["300", "300"])
        // Group commit: rows written together share a transaction (xmin). With an INSERT per
        // row there would be 300 transactions.
        let transactions = Int(try await pool.query("SELECT count(DISTINCT xmin::text) FROM audit_log WHERE actor = \(actor)").scalar ?? "") ?? 0
        #expect((1...150).contains(transactions), "\(transactions) transactions for 300 concurrent rows")

        // A database that cannot be reached fails every caller, and none waits forever.
        let unreachable = PostgresPool(url: "postgres://nobody@127.0.0.1:1/none", threadPool: threadPool, maxConnections: 1)
        let broken = AuditWriter(pool: unreachable)
        let failures = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do {
                        try await broken.write(AuditEntry(actor: actor, action: "test", resource: "lost"))
                        return false
                    } catch {
                        return true
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(failures == 20)
        try await threadPool.shutdownGracefully()
    }
}
