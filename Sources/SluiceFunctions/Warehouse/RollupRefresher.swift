import Logging
import ServiceLifecycle
import Sluice
import SluicePostgres

/// Folds what the `events` triggers wrote to `events_rollup_delta` into the minute and hour
/// rollups of `events_rollup` (migration 8), so that the summary reads a few rows per hour
/// instead of every event.
///
/// One round, in one REPEATABLE READ transaction (one snapshot, so that a minute counted again
/// from the events and the deltas it removes describe the same rows): take the oldest deltas;
/// count each minute marked for recounting again from the events, and drop all of its deltas;
/// add the other deltas to their minute and hour; rebuild each hour that holds a recounted
/// minute from its minutes. Only one replica refreshes at a time (a session advisory lock),
/// so two rounds never overwrite each other's sums.
struct RollupRefresher: Service {
    let pool: PostgresPool
    let logger: Logger
    let interval: Duration
    let batch: Int

    static let lockKey = "7239011"  // pg_advisory_lock key of the refresher

    func run() async throws {
        let stopping = StopFlag()
        var warned = false
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !stopping.isSet {
                var taken = 0
                do {
                    taken = try await Self.refresh(pool, batch: batch)
                    warned = false
                } catch {
                    if !warned { logger.warning("rollup refresher cannot reach PostgreSQL", metadata: ["error": .string("\(type(of: error))")]) }
                    warned = true
                }
                if taken < batch { try? await Task.sleep(for: interval) }
            }
        } onGracefulShutdown: {
            stopping.set()
        }
    }

    /// Runs one round; answers how many deltas it folded (0 when another replica holds the lock).
    @discardableResult
    static func refresh(_ pool: PostgresPool, batch: Int = 5000) async throws -> Int {
        try await pool.withConnection { connection in
            guard try connection.query("SELECT pg_try_advisory_lock(\(lockKey)::bigint)").scalar(Bool.self) == true else { return 0 }
            defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(lockKey)::bigint)") }
            try connection.executeUnparameterized("BEGIN ISOLATION LEVEL REPEATABLE READ")
            do {
                let folded = try round(connection, batch: batch)
                try connection.executeUnparameterized("COMMIT")
                return folded
            } catch {
                try? connection.executeUnparameterized("ROLLBACK")
                throw error
            }
        }
    }

    struct Key: Hashable {
        var width: Int64
        var bucket: Int64
        var allTypes: Bool
        var eventType: String?
    }

    struct Cell {
        var events: Int64 = 0
        var sketch = DistinctSketch()
    }

    static func hour(of minute: Int64) -> Int64 { SummaryPlan.floorDiv(minute, 3600) * 3600 }

    private static func round(_ connection: PostgresConnection, batch: Int) throws -> Int {
        let taken = try connection.query("""
            DELETE FROM events_rollup_delta WHERE id IN (SELECT id FROM events_rollup_delta ORDER BY id LIMIT \(batch)::integer)
            RETURNING bucket, event_type, events, hashes, recompute
            """)
        guard !taken.isEmpty else { return 0 }
        var recount = Set<Int64>()
        var deltas: [(minute: Int64, type: String?, events: Int64, hashes: [UInt64])] = []
        for (minute, type, events, hashes, recompute) in try taken.decode((Int64, String?, Int64, UserHashes, Bool).self) {
            if recompute {
                recount.insert(minute)
            } else {
                deltas.append((minute, type, events, hashes.values))
            }
        }
        let rebuiltHours = Set(recount.map(hour(of:)))
        var cells: [Key: Cell] = [:]
        var groups = Set<[Int64]>()  // (width, bucket) rewritten whole

        if !recount.isEmpty {
            let minutes = recount.sorted()
            // Deltas of these minutes beyond this batch describe rows the recount reads.
            try connection.query("DELETE FROM events_rollup_delta WHERE bucket = ANY(\(minutes)::bigint[])")
            let counted = try connection.query("""
                SELECT m.b, e.event_type, count(*),
                       coalesce(array_agg(DISTINCT hashtextextended(e.user_id, 0)) FILTER (WHERE e.user_id IS NOT NULL), '{}')
                FROM unnest(\(minutes)::bigint[]) AS m (b)
                JOIN events e ON e.event_time >= to_timestamp(m.b) AND e.event_time < to_timestamp(m.b + 60)
                GROUP BY 1, 2
                """)
            for minute in recount { groups.insert([60, minute]) }
            for (minute, type, events, hashes) in try counted.decode((Int64, String?, Int64, UserHashes).self) {
                for key in [Key(width: 60, bucket: minute, allTypes: false, eventType: type), Key(width: 60, bucket: minute, allTypes: true)] {
                    cells[key, default: Cell()].events += events
                    cells[key, default: Cell()].sketch.insert(contentsOf: hashes.values)
                }
            }
        }

        // The other deltas are added to what their minute and hour hold.
        deltas.removeAll { recount.contains($0.minute) }
        var folded = Set<[Int64]>()
        for delta in deltas {
            folded.insert([60, delta.minute])
            if !rebuiltHours.contains(hour(of: delta.minute)) { folded.insert([3600, hour(of: delta.minute)]) }
        }
        if !folded.isEmpty {
            let list = Array(folded)
            let existing = try connection.query("""
                SELECT r.width, r.bucket, r.all_types, r.event_type, r.events, r.sketch
                FROM unnest(\(list.map { $0[0] })::bigint[], \(list.map { $0[1] })::bigint[]) AS g (w, b)
                JOIN events_rollup r ON r.width = g.w AND r.bucket = g.b
                """)
            for (width, bucket, allTypes, type, events, sketch) in try existing.decode((Int64, Int64, Bool, String?, Int64, DistinctSketch).self) {
                cells[Key(width: width, bucket: bucket, allTypes: allTypes, eventType: type)] = Cell(events: events, sketch: sketch)
            }
            groups.formUnion(folded)
            for delta in deltas {
                var keys = [Key(width: 60, bucket: delta.minute, allTypes: false, eventType: delta.type),
                            Key(width: 60, bucket: delta.minute, allTypes: true)]
                let hour = hour(of: delta.minute)
                if !rebuiltHours.contains(hour) {
                    keys += [Key(width: 3600, bucket: hour, allTypes: false, eventType: delta.type), Key(width: 3600, bucket: hour, allTypes: true)]
                }
                for key in keys {
                    cells[key, default: Cell()].events += delta.events
                    cells[key, default: Cell()].sketch.insert(contentsOf: delta.hashes)
                }
            }
        }
        try write(cells, groups: groups, connection)  // no hour of rebuiltHours is among them

        // Hours holding a recounted minute are the sum of their minutes, as now written.
        if !rebuiltHours.isEmpty {
            let hours = rebuiltHours.sorted()
            let minutes = try connection.query("""
                SELECT h.b, r.all_types, r.event_type, r.events, r.sketch
                FROM unnest(\(hours)::bigint[]) AS h (b)
                JOIN events_rollup r ON r.width = 60 AND r.bucket >= h.b AND r.bucket < h.b + 3600
                """)
            var hourCells: [Key: Cell] = [:]
            for (hour, allTypes, type, events, sketch) in try minutes.decode((Int64, Bool, String?, Int64, DistinctSketch).self) {
                let key = Key(width: 3600, bucket: hour, allTypes: allTypes, eventType: type)
                hourCells[key, default: Cell()].events += events
                hourCells[key, default: Cell()].sketch.merge(sketch)
            }
            try write(hourCells, groups: Set(hours.map { [3600, $0] }), connection)
        }
        return taken.count
    }

    /// Replaces the rows of each (width, bucket) group with `cells` (a group left without
    /// events has no rows).
    private static func write(_ cells: [Key: Cell], groups: Set<[Int64]>, _ connection: PostgresConnection) throws {
        guard !groups.isEmpty else { return }
        let list = Array(groups)
        try connection.query("""
            DELETE FROM events_rollup r USING unnest(\(list.map { $0[0] })::bigint[], \(list.map { $0[1] })::bigint[]) AS g (w, b)
            WHERE r.width = g.w AND r.bucket = g.b
            """)
        let rows = cells.filter { $0.value.events > 0 }
        guard !rows.isEmpty else { return }
        try connection.query("""
            INSERT INTO events_rollup (width, bucket, all_types, event_type, events, users, users_exact, sketch)
            SELECT * FROM unnest(\(rows.map(\.key.width))::integer[], \(rows.map(\.key.bucket))::bigint[], \(rows.map(\.key.allTypes))::boolean[],
                                 \(rows.map(\.key.eventType))::text[], \(rows.map(\.value.events))::bigint[],
                                 \(rows.map(\.value.sketch.estimate))::bigint[], \(rows.map(\.value.sketch.isExact))::boolean[],
                                 \(rows.map(\.value.sketch.byteaHex))::bytea[])
            """)
    }
}
