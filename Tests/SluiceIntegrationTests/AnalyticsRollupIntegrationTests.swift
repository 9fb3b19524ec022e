import Foundation
import Logging
import NIOPosix
import Sluice
import SluicePostgres
@testable import SluiceFunctions
import Testing

/// The summary from the rollups equals the summary that reads every event, whatever state the
/// rollups are in: deltas not folded yet, folded, minutes marked for recounting after UPDATE
/// and DELETE, folded in small batches, and after TRUNCATE. On a database of its own.
@Suite("Analytics rollups", .serialized)
struct AnalyticsRollupIntegrationTests {
    static let base: Int64 = 978_307_200  // 2001-01-01T00:00:00Z

    struct Fixture {
        let pool: PostgresPool
        let warehouse: WarehouseFunction

        func summaries(_ query: [String: String]) async throws -> (rollup: JSONObject, exact: JSONObject) {
            let request = try warehouse.summaryRequest({ query[$0] }, now: 0)
            return (try await warehouse.rollupSummary(request), try await warehouse.exactSummary(request))
        }

        static func iso(_ seconds: Int64, plus milliseconds: Int64 = 0) -> String {
            WarehouseFunction.iso(milliseconds: seconds * 1000 + milliseconds)
        }

        /// Queries over the data: aligned and cut ranges, every window length, a type filter.
        static let queries: [[String: String]] = [
            ["from": iso(base), "to": iso(base + 3 * 3600), "window": "1h"],
            ["from": iso(base + 125, plus: 250), "to": iso(base + 2 * 3600 + 61, plus: 1), "window": "1m"],
            ["from": iso(base + 600), "to": iso(base + 3 * 3600), "window": "5m", "event_type": "a"],
            ["from": iso(base - 3600), "to": iso(base + 86_400), "window": "1d"],
            ["from": iso(base + 4_000, plus: 7), "to": iso(base + 9_000), "window": "15m"],
            ["from": iso(base + 4_900), "to": iso(base + 5_200), "window": "1m", "event_type": "a"],
        ]

        /// Events and by-type counts equal. Unique users equal when the answer says it is exact,
        /// and wherever the real count is at most 512 (every sketch of such a window holds
        /// hashes); else within three standard errors.
        func expectRollupsMatchTheEvents(_ phase: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            for query in Self.queries {
                let (rollup, exact) = try await summaries(query)
                let label = "\(phase) \(query)"
                let estimated = rollup["unique_users_estimated"]?.boolValue ?? false
                func compare(_ mine: JSONValue?, _ truth: JSONValue?, _ what: String) {
                    #expect(mine?["events"] == truth?["events"], "\(label) \(what) events", sourceLocation: sourceLocation)
                    #expect(mine?["by_event_type"] == truth?["by_event_type"], "\(label) \(what) by type", sourceLocation: sourceLocation)
                    let users = mine?["unique_users"]?.intValue ?? -1, real = truth?["unique_users"]?.intValue ?? -2
                    if !estimated || real <= DistinctSketch.storedExactLimit {
                        #expect(users == real, "\(label) \(what) users", sourceLocation: sourceLocation)
                    } else {
                        let error: Double = abs(Double(users - real)), bound: Double = Double(real) * 3 * 1.04 / 64
                        #expect(error <= bound, "\(label) \(what) users \(users) vs \(real)", sourceLocation: sourceLocation)
                    }
                }
                compare(rollup["total"], exact["total"], "total")
                let mine = rollup["windows"]?.arrayValue ?? [], truth = exact["windows"]?.arrayValue ?? []
                #expect(mine.map { $0["start"] } == truth.map { $0["start"] }, "\(label) window starts", sourceLocation: sourceLocation)
                for (a, b) in zip(mine, truth) { compare(a, b, "window \(b["start"]?.stringValue ?? "")") }
            }
        }

        func refreshAll(batch: Int = 5000) async throws {
            while try await RollupRefresher.refresh(pool, batch: batch) > 0 {}
            #expect(try await pool.query("SELECT count(*) FROM events_rollup_delta").scalar == "0")
        }

        func insert(prefix: String, count: Int, users: Int, seed: Int) async throws {
            // Three hours from base, times with milliseconds, a quarter of the types NULL, every
            // 13th user NULL; deterministic.
            try await pool.query("""
                INSERT INTO events (event_id, event_type, event_time, user_id, received_at)
                SELECT \(prefix) || i, (ARRAY['a', 'b', 'c', NULL])[1 + (i + \(seed)::integer) % 4],
                       to_timestamp(\(AnalyticsRollupIntegrationTests.base)::bigint + (i * 7919 + \(seed)::integer) % 10800 + (i % 1000) / 1000.0),
                       CASE WHEN i % 13 = 0 THEN NULL ELSE 'u-' || ((i * 31 + \(seed)::integer) % \(users)::integer) END, now()
                FROM generate_series(1, \(count)::integer) AS i
                """)
        }
    }

    static func withFixture(_ body: (Fixture) async throws -> Void) async throws {
        guard let databaseURL = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let admin = PostgresPool(url: databaseURL, threadPool: threadPool, maxConnections: 1)
        let name = "rollups_\(UInt32.random(in: 0...UInt32.max))"
        try await admin.query("CREATE DATABASE \(identifier: name)")  // name is ours: letters and digits
        let url = databaseURL.replacingOccurrences(of: #"/[^/?]*(\?|$)"#, with: "/\(name)$1", options: .regularExpression)
        let pool = PostgresPool(url: url, threadPool: threadPool, maxConnections: 3)
        do {
            try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
            // The calls and warehouse functions mask as validate does: they need the pseudonym key.
            var configuration = RuntimeConfiguration()
            configuration.pseudonymKey = "an integration test's pseudonym key"
            let manifest = Manifest(name: "warehouse", handler: "warehouse", triggers: [.http], config: [:])
            let warehouse = try WarehouseFunction(setup: .testing(manifest, threadPool: threadPool, postgres: pool, configuration: configuration))
            try await body(Fixture(pool: pool, warehouse: warehouse))
        } catch {
            _ = try? await admin.query("DROP DATABASE \(identifier: name) WITH (FORCE)")
            throw error
        }
        try await admin.query("DROP DATABASE \(identifier: name) WITH (FORCE)")
    }

    @Test func theRollupSummaryEqualsTheEventsInEveryState() async throws {
        try await Self.withFixture { fixture in
            let pool = fixture.pool
            try await fixture.insert(prefix: "r-", count: 6_000, users: 40, seed: 0)
            // One minute with 3,000 distinct users of type a: its sketches hold registers.
            try await pool.query("""
                INSERT INTO events (event_id, event_type, event_time, user_id, received_at)
                SELECT 'd-' || i, 'a', to_timestamp(\(Self.base)::bigint + 4990 + (i % 40)), 'big-' || i, now() FROM generate_series(1, 3000) AS i
                """)
            #expect(try await pool.query("SELECT count(*) FROM events_rollup_delta WHERE recompute").scalar == "0")
            try await fixture.expectRollupsMatchTheEvents("pending")

            try await fixture.refreshAll()
            let levels = try await pool.query("SELECT width, count(*) FROM events_rollup GROUP BY 1 ORDER BY 1").rows
            #expect(levels.map { $0[0] } == ["60", "3600"])
            #expect(try await pool.query("SELECT count(*) FROM events_rollup WHERE width = 3600 AND all_types").scalar == "3")
            try await fixture.expectRollupsMatchTheEvents("folded")
            let dense = try await fixture.summaries(["from": Fixture.iso(Self.base + 4980), "to": Fixture.iso(Self.base + 5040), "window": "1m"])
            #expect(dense.rollup["unique_users_estimated"] == true)
            #expect(dense.exact["unique_users_estimated"] == false)
            let small = try await fixture.summaries(["from": Fixture.iso(Self.base), "to": Fixture.iso(Self.base + 3600), "window": "1h"])
            #expect(small.rollup["unique_users_estimated"] == false)
            #expect(small.rollup["total"]?["unique_users"] == small.exact["total"]?["unique_users"])

            // Changes: new rows (pending), rows deleted, rows whose type, user or time changed
            // (their minutes marked for recounting), and rows whose properties alone changed
            // (nothing the summary counts: no mark).
            try await fixture.insert(prefix: "s-", count: 900, users: 55, seed: 3)
            try await pool.query("DELETE FROM events WHERE event_id LIKE 'r-%' AND event_id::text ~ '7$'")
            try await pool.query("UPDATE events SET event_type = 'b' WHERE event_id IN ('r-11', 'r-12', 'd-5')")
            try await pool.query("UPDATE events SET user_id = 'moved' WHERE event_id IN ('r-21', 'r-22')")
            try await pool.query("UPDATE events SET event_time = event_time + interval '1 hour' WHERE event_id = 'r-31'")
            let marks = try await pool.query("SELECT count(*) FROM events_rollup_delta WHERE recompute").scalar
            try await pool.query("UPDATE events SET properties = '{\"k\": 1}'::jsonb WHERE event_id LIKE 'r-1%'")
            #expect(try await pool.query("SELECT count(*) FROM events_rollup_delta WHERE recompute").scalar == marks)
            try await fixture.expectRollupsMatchTheEvents("changed")
            // One round takes the new rows' deltas and the marks of the same minutes together.
            #expect(try await RollupRefresher.refresh(pool, batch: 100_000) > 0)
            #expect(try await pool.query("SELECT count(*) FROM events_rollup_delta").scalar == "0")
            try await fixture.expectRollupsMatchTheEvents("refolded in one round")

            // Marks first, then new rows of the same minutes, folded seven deltas at a time: the
            // round that recounts a minute drops its later deltas, which the recount has read.
            try await pool.query("DELETE FROM events WHERE event_id LIKE 'r-%' AND event_id::text ~ '3$'")
            try await fixture.insert(prefix: "v-", count: 700, users: 60, seed: 4)
            try await fixture.expectRollupsMatchTheEvents("marks before new rows")
            try await fixture.refreshAll(batch: 7)
            try await fixture.expectRollupsMatchTheEvents("refolded in small batches")

            // Everything deleted row by row, then refreshed: no rollup rows are left.
            try await pool.query("DELETE FROM events WHERE event_id LIKE 's-%'")
            try await fixture.refreshAll()
            try await fixture.expectRollupsMatchTheEvents("after deleting a load")
            try await pool.query("DELETE FROM events")
            try await fixture.refreshAll()
            #expect(try await pool.query("SELECT count(*) FROM events_rollup").scalar == "0")

            // TRUNCATE empties the rollups and the pending deltas.
            try await fixture.insert(prefix: "t-", count: 50, users: 5, seed: 1)
            try await fixture.refreshAll(batch: 3)
            try await fixture.insert(prefix: "u-", count: 50, users: 5, seed: 2)
            try await pool.query("TRUNCATE events")
            #expect(try await pool.query("SELECT (SELECT count(*) FROM events_rollup) + (SELECT count(*) FROM events_rollup_delta)").scalar == "0")
            let empty = try await fixture.summaries(["from": Fixture.iso(Self.base), "to": Fixture.iso(Self.base + 3600)])
            #expect(empty.rollup["total"] == ["events": 0, "unique_users": 0, "by_event_type": [:]])
            #expect(empty.rollup["windows"] == [])
        }
    }

    @Test func twoRefreshersAtOnceCountEverythingOnce() async throws {
        try await Self.withFixture { fixture in
            try await fixture.insert(prefix: "r-", count: 4_000, users: 300, seed: 5)
            try await fixture.insert(prefix: "s-", count: 4_000, users: 300, seed: 6)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<3 { group.addTask { for _ in 0..<20 { try await RollupRefresher.refresh(fixture.pool, batch: 50) } } }
                try await group.waitForAll()
            }
            try await fixture.refreshAll()
            #expect(try await fixture.pool.query("SELECT sum(events) FROM events_rollup WHERE width = 3600 AND all_types").scalar == "8000")
            #expect(try await fixture.pool.query("SELECT sum(events) FROM events_rollup WHERE width = 60 AND NOT all_types").scalar == "8000")
            try await fixture.expectRollupsMatchTheEvents("concurrent refreshers")
        }
    }
}
