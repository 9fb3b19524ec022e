import Foundation
import Sluice
import SluiceHTTP
import SluicePostgres

/// `GET /api/v1/analytics/summary`: events, unique users and events by type over `[from, to)`,
/// in total and per window. Windows are aligned to multiples of their length since the Unix
/// epoch (UTC), so the same minute is the same window in every answer.
///
/// Answered from the rollups (migration 8, ``RollupRefresher``) in one REPEATABLE READ
/// snapshot: whole hours and minutes from `events_rollup`, plus the deltas the refresher has
/// not folded yet, plus the events of partial minutes at either end and of minutes marked for
/// recounting. Event counts are exact; unique users are exact while every minute holds at most
/// 512 users per type, and a HyperLogLog estimate beyond (`unique_users_estimated`).
/// `exact=true` reads every event of the range instead.
extension WarehouseFunction {
    struct SummaryRequest {
        var from: Int64  // Unix milliseconds
        var to: Int64
        var windowName: String
        var window: Int64  // seconds
        var eventType: String?
        var exact: Bool
    }

    func summary(_ parameter: (String) -> String?) async throws -> JSONResponse {
        let request = try summaryRequest(parameter, now: Int64(Date().timeIntervalSince1970 * 1000))
        var answer: JSONObject
        do {
            answer = request.exact ? try await exactSummary(request) : try await rollupSummary(request)
        } catch let problem as Problem {
            throw problem
        } catch {
            logger.warning("summary failed", metadata: ["error": .string("\(type(of: error))")])
            throw Self.unavailable
        }
        answer["from"] = .string(Self.iso(milliseconds: request.from))
        answer["to"] = .string(Self.iso(milliseconds: request.to))
        answer["window"] = .string(request.windowName)
        if let eventType = request.eventType { answer["event_type"] = .string(eventType) }
        return JSONResponse(status: .ok, value: .object(answer))
    }

    func summaryRequest(_ parameter: (String) -> String?, now: Int64) throws -> SummaryRequest {
        func time(_ name: String, default fallback: Int64) throws -> Int64 {
            guard let text = parameter(name) else { return fallback }
            guard let milliseconds = Timestamp.milliseconds(text) else {
                throw Problem(.badRequest, code: "invalid_parameter", detail: "\(name) must be an ISO 8601 time", extra: ["parameter": .string(name)])
            }
            return milliseconds
        }
        // By default the hour up to the end of the current minute: whole minutes, all from rollups.
        let to = try time("to", default: (now / 60_000 + 1) * 60_000)
        let from = try time("from", default: to - 3_600_000)
        let windowName = parameter("window") ?? "1m"
        guard let window = Self.windows[windowName] else {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "window must be one of 1m, 5m, 15m, 1h, 1d", extra: ["parameter": "window"])
        }
        guard from < to else {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "from must be before to", extra: ["parameter": "from"])
        }
        guard from >= 0 else {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "from must not be before 1970-01-01T00:00:00Z", extra: ["parameter": "from"])
        }
        let seconds = (to - from) / 1000
        guard seconds <= maxRange.components.seconds else {
            throw Problem(.badRequest, code: "range_too_large", detail: "the range may cover at most \(maxRange.components.seconds) seconds",
                          extra: ["parameter": "from"])
        }
        guard (to - from) / (Int64(window) * 1000) <= Int64(maxWindows) else {
            throw Problem(.badRequest, code: "range_too_large", detail: "at most \(maxWindows) windows; choose a larger window", extra: ["parameter": "window"])
        }
        let exact: Bool
        switch parameter("exact") {
        case nil, "false"?, "0"?: exact = false
        case "true"?, "1"?: exact = true
        default: throw Problem(.badRequest, code: "invalid_parameter", detail: "exact must be true or false", extra: ["parameter": "exact"])
        }
        return SummaryRequest(from: from, to: to, windowName: windowName, window: Int64(window), eventType: parameter("event_type"), exact: exact)
    }

    /// The figures of one window (or of the whole range) as they are gathered.
    struct Tally {
        var events: Int64 = 0
        var byType: [String: Int64] = [:]
        var users = DistinctSketch(exactLimit: DistinctSketch.answerExactLimit)
        /// The users of a window that is one rollup bucket: its stored count, no sketch read.
        var storedUsers: (count: Int64, exact: Bool)?

        var uniqueUsers: Int64 { storedUsers?.count ?? users.estimate }
        var usersExact: Bool { storedUsers?.exact ?? users.isExact }

        var json: JSONObject {
            var types = JSONObject()
            for (type, count) in byType.sorted(by: { $0.key < $1.key }) { types[type] = .int(count) }
            return ["events": .int(events), "unique_users": .int(uniqueUsers), "by_event_type": .object(types)]
        }
    }

    static func typeName(_ type: String?) -> String { type ?? "unknown" }

    /// A rollup bucket: width (60 or 3600 seconds) and start (Unix seconds).
    struct Bucket: Hashable {
        var width: Int64
        var start: Int64
    }

    func rollupSummary(_ request: SummaryRequest) async throws -> JSONObject {
        let firstMinute = SummaryPlan.floorDiv(request.from, 60_000) * 60
        let endSecond = SummaryPlan.floorDiv(request.to + 59_999, 60_000) * 60
        return try await pool.withConnection { connection -> JSONObject in
            try connection.executeUnparameterized("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            defer { try? connection.executeUnparameterized("COMMIT") }
            let staleRows = try connection.query(
                "SELECT DISTINCT bucket FROM events_rollup_delta WHERE recompute AND bucket >= \(firstMinute)::bigint AND bucket < \(endSecond)::bigint")
            let stale = Set(try staleRows.decode(Int64.self))
            // The windows asked for, and the range cut into the largest buckets (day-long
            // windows: whole hours wherever they are fresh) for the total's unique users.
            let plan = SummaryPlan(from: request.from, to: request.to, window: request.window, stale: stale)
            let cover = request.window == 86_400 ? plan : SummaryPlan(from: request.from, to: request.to, window: 86_400, stale: stale)

            var windowOf: [Bucket: Int] = [:]
            var intervals: [(start: Int64, end: Int64, window: Int)] = []
            var single = Set<Int>()  // windows that are exactly one bucket
            for (index, window) in plan.windows.enumerated() {
                for piece in window.pieces {
                    switch piece {
                    case .minute(let start): windowOf[Bucket(width: 60, start: start)] = index
                    case .hour(let start): windowOf[Bucket(width: 3600, start: start)] = index
                    case .events(let start, let end): intervals.append((start, end, index))
                    }
                }
                if window.pieces.count == 1, !window.pieces[0].isEvents { single.insert(index) }
            }
            var covering = Set<Bucket>()
            for window in cover.windows {
                for piece in window.pieces {
                    switch piece {
                    case .minute(let start): covering.insert(Bucket(width: 60, start: start))
                    case .hour(let start): covering.insert(Bucket(width: 3600, start: start))
                    case .events: break  // the same partial and stale minutes as the plan's
                    }
                }
            }
            /// The bucket holding a minute: the minute's own, or its hour's.
            func bucket(ofMinute minute: Int64, _ holds: (Bucket) -> Bool) -> Bucket? {
                let asMinute = Bucket(width: 60, start: minute), asHour = Bucket(width: 3600, start: RollupRefresher.hour(of: minute))
                return holds(asMinute) ? asMinute : holds(asHour) ? asHour : nil
            }

            let filter = request.eventType
            var tallies = plan.windows.map { _ in Tally() }
            var total = Tally()
            func add(_ index: Int, type: String?, events: Int64, hashes: [UInt64], toTotal: Bool) {
                tallies[index].events += events
                tallies[index].byType[Self.typeName(type), default: 0] += events
                tallies[index].users.insert(contentsOf: hashes)
                if toTotal { total.users.insert(contentsOf: hashes) }
            }

            // What the refresher has not folded yet: added to the buckets' figures, and a
            // window with pending users needs its buckets' sketches.
            let pendingRows = try connection.query("""
                SELECT bucket, event_type, events, hashes FROM events_rollup_delta
                WHERE NOT recompute AND bucket >= \(firstMinute)::bigint AND bucket < \(endSecond)::bigint AND (\(filter)::text IS NULL OR event_type = \(filter)::text)
                """)
            var pending: [(window: Int, type: String?, events: Int64, hashes: [UInt64], toTotal: Bool)] = []
            for (minute, type, events, hashes) in try pendingRows.decode((Int64, String?, Int64, UserHashes).self) {
                guard let owner = bucket(ofMinute: minute, { windowOf[$0] != nil }), let index = windowOf[owner] else { continue }
                let inCover = bucket(ofMinute: minute, { covering.contains($0) }) != nil
                pending.append((index, type, events, hashes.values, inCover))
                single.remove(index)
            }

            // Whole buckets. Sketches only where users must be merged: the cover's buckets and
            // the buckets of windows made of several. Without a type filter the all-types row
            // gives the events and users, the per-type rows only their counts.
            var sketched = covering
            for (bucket, index) in windowOf where !single.contains(index) { sketched.insert(bucket) }
            let wanted = Set(windowOf.keys).union(covering)
            if !wanted.isEmpty {
                func starts(_ width: Int64, _ set: Set<Bucket>) -> [Int64] {
                    set.filter { $0.width == width }.map(\.start)
                }
                let rows = try connection.query("""
                    SELECT width, bucket, all_types, event_type, events, users, users_exact,
                           CASE WHEN (all_types OR \(filter)::text IS NOT NULL)
                                 AND ((width = 60 AND bucket = ANY(\(starts(60, sketched))::bigint[]))
                                      OR (width = 3600 AND bucket = ANY(\(starts(3600, sketched))::bigint[])))
                                THEN sketch END
                    FROM events_rollup
                    WHERE ((width = 60 AND bucket = ANY(\(starts(60, wanted))::bigint[])) OR (width = 3600 AND bucket = ANY(\(starts(3600, wanted))::bigint[])))
                      AND (\(filter)::text IS NULL OR (NOT all_types AND event_type = \(filter)::text))
                    """)
                let decoded = try rows.decode((Int64, Int64, Bool, String?, Int64, Int64, Bool, DistinctSketch?).self)
                for (width, start, allTypes, type, events, users, usersExact, sketch) in decoded {
                    let bucket = Bucket(width: width, start: start)
                    let counting = allTypes || filter != nil
                    if counting, covering.contains(bucket), let sketch { total.users.merge(sketch) }
                    guard let index = windowOf[bucket] else { continue }
                    if !allTypes { tallies[index].byType[Self.typeName(type), default: 0] += events }
                    guard counting else { continue }
                    tallies[index].events += events
                    if single.contains(index) {
                        tallies[index].storedUsers = (users, usersExact)
                    } else if let sketch {
                        tallies[index].users.merge(sketch)
                    }
                }
            }
            for delta in pending {
                add(delta.window, type: delta.type, events: delta.events, hashes: delta.hashes, toTotal: delta.toTotal)
            }
            // Partial minutes and minutes being recounted, from the events.
            if !intervals.isEmpty {
                let rows = try connection.query("""
                    SELECT r.i, e.event_type, count(*),
                           coalesce(array_agg(DISTINCT hashtextextended(e.user_id, 0)) FILTER (WHERE e.user_id IS NOT NULL), '{}')
                    FROM unnest(\(intervals.map { Self.iso(milliseconds: $0.start) })::timestamptz[],
                                \(intervals.map { Self.iso(milliseconds: $0.end) })::timestamptz[]) WITH ORDINALITY AS r (s, e, i)
                    JOIN events e ON e.event_time >= r.s AND e.event_time < r.e AND (\(filter)::text IS NULL OR e.event_type = \(filter)::text)
                    GROUP BY 1, 2
                    """)
                for (ordinal, type, events, hashes) in try rows.decode((Int, String?, Int64, UserHashes).self) {
                    guard ordinal >= 1, ordinal <= intervals.count else { continue }
                    add(intervals[ordinal - 1].window, type: type, events: events, hashes: hashes.values, toTotal: true)
                }
            }

            var windows: [JSONValue] = []
            var estimated = !total.users.isExact
            for (index, tally) in tallies.enumerated() where tally.events > 0 {
                total.events += tally.events
                total.byType.merge(tally.byType, uniquingKeysWith: +)
                estimated = estimated || !tally.usersExact
                var window = tally.json
                window["start"] = .string(Self.iso(milliseconds: plan.windows[index].start * 1000, fraction: false))
                windows.append(.object(window))
            }
            return ["total": .object(total.json), "windows": .array(windows), "unique_users_estimated": .bool(estimated)]
        }
    }

    /// Every event of the range read and counted by PostgreSQL: one scan of the
    /// `(event_time, event_type) INCLUDE (user_id)` index; grouping sets give the per-window,
    /// per-type, per-window-and-type and overall figures at once.
    func exactSummary(_ request: SummaryRequest) async throws -> JSONObject {
        let rows = try await pool.query("""
            SELECT grouping(w, event_type), to_char(w AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   event_type, count(*), count(DISTINCT user_id)
            FROM (SELECT date_bin(make_interval(secs => \(request.window)::integer), event_time, '1970-01-01T00:00:00Z'::timestamptz) AS w, event_type, user_id
                  FROM events
                  WHERE event_time >= \(Self.iso(milliseconds: request.from))::timestamptz AND event_time < \(Self.iso(milliseconds: request.to))::timestamptz
                    AND (\(request.eventType)::text IS NULL OR event_type = \(request.eventType)::text)) AS scoped
            GROUP BY GROUPING SETS ((w, event_type), (w), (event_type), ())
            """)
        var total: JSONObject = ["events": 0, "unique_users": 0, "by_event_type": [:]]
        var windows: [(String, JSONObject)] = []
        var indexOfWindow: [String: Int] = [:]  // up to max_windows windows: no linear search per row
        func windowIndex(_ start: String) -> Int {
            if let index = indexOfWindow[start] { return index }
            windows.append((start, ["start": .string(start), "events": 0, "unique_users": 0, "by_event_type": [:]]))
            indexOfWindow[start] = windows.count - 1
            return windows.count - 1
        }
        for (grouping, start, eventType, eventCount, userCount) in try rows.decode((Int, String?, String?, Int64, Int64).self) {
            let events = JSONValue.int(eventCount), users = JSONValue.int(userCount)
            let type = Self.typeName(eventType)
            switch grouping {
            case 0:  // window and type
                let index = windowIndex(start ?? "")
                var byType = windows[index].1["by_event_type"]?.objectValue ?? [:]
                byType[type] = events
                windows[index].1["by_event_type"] = .object(byType)
            case 1:  // window
                let index = windowIndex(start ?? "")
                windows[index].1["events"] = events
                windows[index].1["unique_users"] = users
            case 2:  // type
                var byType = total["by_event_type"]?.objectValue ?? [:]
                byType[type] = events
                total["by_event_type"] = .object(byType)
            default:  // everything
                total["events"] = events
                total["unique_users"] = users
            }
        }
        windows.sort { $0.0 < $1.0 }
        return ["total": .object(total), "windows": .array(windows.map { .object($0.1) }), "unique_users_estimated": false]
    }

    /// Unix milliseconds as ISO 8601 UTC: `2026-11-23T15:04:05.123Z`, or without the fraction.
    static func iso(milliseconds: Int64, fraction: Bool = true) -> String {
        let text = PipelineClock.timestamp(milliseconds)
        return fraction ? text : String(text.prefix(19)) + "Z"
    }
}
