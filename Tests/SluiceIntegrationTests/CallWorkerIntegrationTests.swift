import Foundation
import Logging
import NIOPosix
import Sluice
import SluicePostgres
@testable import SluiceFunctions
import Testing

/// The async-call worker's decisions against real PostgreSQL rows.
@Suite("Async call worker", .serialized)
struct CallWorkerIntegrationTests {
    @Test func aCallLeftRunningByADeadReplicaRunsAgainAndACallbackFailsAfterItsAttempts() async throws {
        guard let databaseURL = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let pool = PostgresPool(url: databaseURL, threadPool: threadPool, maxConnections: 2)
        try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
        try await pool.query("DELETE FROM async_calls")

        let directory = NSTemporaryDirectory() + "sluice-calls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: "\(directory)/filter", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "handler: filter\ntriggers: [{stream: filter}]\n".write(toFile: "\(directory)/filter/function.yaml", atomically: true, encoding: .utf8)
        // The calls and warehouse functions mask as validate does: they need the pseudonym key.
        // The dead port is on loopback: allowed (that host and port only), so each attempt
        // reaches connect() and fails there, as a callback to a host that is down does.
        var runtime = RuntimeConfiguration()
        runtime.pseudonymKey = "an integration test's pseudonym key"
        runtime.callbackAllowHosts = ["127.0.0.1:1"]
        let manifest = Manifest(name: "calls", handler: "calls", triggers: [.http],
                                config: ["call_timeout": "60s", "callback_attempts": 2, "callback_timeout": "2s"])
        let worker = CallWorker(function: try CallsFunction(setup: .testing(manifest, threadPool: threadPool, postgres: pool, configuration: runtime, functionsDirectory: directory)))

        // One call whose replica died ten minutes into it, one another replica is running now.
        // Both call back to a port where nothing listens.
        let stale = UUID().uuidString.lowercased(), busy = UUID().uuidString.lowercased()
        for (id, started) in [(stale, "10 minutes"), (busy, "0 seconds")] {
            try await pool.query("""
                INSERT INTO async_calls (id, function, status, events, callback_url, started_at)
                VALUES (\(id)::uuid, 'filter', 'running', '[{"id": "a"}, {"id": "b", "drop": true}]'::jsonb, 'http://127.0.0.1:1/hook',
                        now() - \(started)::interval)
                """)
        }
        #expect(try await worker.runOne())
        #expect(try await !worker.runOne(), "the call another replica is running was taken")
        let rows = try await pool.query("SELECT id::text, status, outcomes::text, callback_status FROM async_calls ORDER BY started_at")
        let byID = Dictionary(uniqueKeysWithValues: rows.rows.map { ($0[0]!, $0) })
        #expect(byID[stale]?[1] == "succeeded")
        let outcomes = try JSONParser().parse(byID[stale]?[2] ?? "null")
        #expect(outcomes.arrayValue?.map { $0["outcome"]?.stringValue ?? "" } == ["forward", "drop"])
        #expect(outcomes[1]?["reason"]?.stringValue == "filtered")
        #expect(byID[stale]?[3] == "pending")
        #expect(byID[busy]?[1] == "running" && byID[busy]?[3] == nil)

        // The callback: the first attempt fails and is due again a second later; the second
        // (the manifest's last) fails the callback for good.
        #expect(try await worker.deliverOne())
        var callback = try await pool.query("""
            SELECT callback_status, callback_attempts::text, callback_error, extract(epoch FROM next_attempt_at - now())::float8::text
            FROM async_calls WHERE id = \(stale)::uuid
            """).rows[0]
        #expect(callback[0] == "pending" && callback[1] == "1" && callback[2] == "not reachable")
        let wait = Double(callback[3] ?? "") ?? -1
        #expect(wait > 0 && wait <= 1, "next attempt in \(wait) s")
        #expect(try await !worker.deliverOne(), "a callback was delivered before it was due")
        try await pool.query("UPDATE async_calls SET next_attempt_at = now() WHERE id = \(stale)::uuid")
        #expect(try await worker.deliverOne())
        callback = try await pool.query("SELECT callback_status, callback_attempts::text, next_attempt_at::text FROM async_calls WHERE id = \(stale)::uuid").rows[0]
        #expect(callback == ["failed", "2", nil])
        #expect(try await !worker.deliverOne())

        try await pool.query("DELETE FROM async_calls WHERE id = ANY(\("{\(stale),\(busy)}")::uuid[])")
        try await threadPool.shutdownGracefully()
    }
}
