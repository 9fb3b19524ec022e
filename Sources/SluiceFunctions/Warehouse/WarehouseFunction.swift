import Foundation
import Hummingbird
import Logging
import NIOCore
import Sluice
import SluiceHTTP
import SluicePostgres

/// Reads and corrects the warehouse: one record by its `event_id`
/// (`GET/PUT/DELETE /api/v1/data/{event_id}`) and the analytics summary
/// (`GET /api/v1/analytics/summary`). Every statement binds its values; column names come
/// from the fixed list below, never from the request.
public struct WarehouseFunction: HTTPFunction {
    let pool: PostgresPool
    let logger: Logger
    /// The longest range one summary may cover.
    let maxRange: Duration
    /// The most windows one summary may answer.
    let maxWindows: Int

    /// Columns a `PUT` sets (all of them: a missing one becomes null), by kind.
    static let textColumns = ["event_type", "user_id", "session_id", "source", "version", "device_type", "device_class",
                              "os_version", "app_version", "country", "country_name", "region"]
    static let jsonColumns = ["properties", "custom_data", "attributes"]
    /// Columns the pipeline owns: a `PUT` may repeat them unchanged, never change them.
    static let fixedColumns = ["event_id", "job_id", "received_at", "loaded_at"]
    static let windows: [String: Int] = ["1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400]

    public init(setup: FunctionSetup) throws {
        pool = try setup.resources.require(PostgresPool.self)
        logger = setup.logger
        maxRange = try setup.manifest.configDuration("max_range", default: .seconds(7 * 86400))
        maxWindows = Int(setup.manifest.config["max_windows"]?.intValue ?? 10_080)
    }

    public func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/api/v1/data/{event_id}") { _, context -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.record(try context.parameters.require("event_id")))
        }
        router.put("/api/v1/data/{event_id}") { request, context -> JSONResponse in
            try await self.replace(try context.parameters.require("event_id"), request: request)
        }
        router.delete("/api/v1/data/{event_id}") { _, context -> Response in
            try await self.delete(try context.parameters.require("event_id"))
            return Response(status: .noContent)
        }
        router.get("/api/v1/analytics/summary") { request, _ -> JSONResponse in
            let query = request.uri.queryParameters
            return try await self.summary { query.get($0) }
        }
    }

    static let recordNotFound = Problem(.notFound, code: "record_not_found", detail: "no record has this event_id")
    static let unavailable = Problem(.serviceUnavailable, code: "warehouse_unavailable", detail: "the warehouse is not available; try again")

    /// The JSON of one row, timestamps in UTC ISO 8601.
    static let rowJSON = """
        jsonb_build_object('event_id', event_id, 'job_id', job_id, 'event_type', event_type,
          'event_time', to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'user_id', user_id, 'session_id', session_id, 'source', source, 'version', version,
          'device_type', device_type, 'device_class', device_class, 'os_version', os_version, 'app_version', app_version,
          'country', country, 'country_name', country_name, 'region', region,
          'properties', properties, 'custom_data', custom_data, 'attributes', attributes,
          'received_at', to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'loaded_at', to_char(loaded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text
        """

    func record(_ eventID: String) async throws -> JSONValue {
        let rows: PostgresRows
        do {
            rows = try await pool.query("SELECT \(Self.rowJSON) FROM events WHERE event_id = $1", [eventID])
        } catch {
            throw Self.unavailable
        }
        guard let text = rows.scalar else { throw Self.recordNotFound }
        return try JSONParser().parse(text)
    }

    /// Replaces the record's columns with the body's (RFC 9110 PUT: a column the body leaves
    /// out becomes null). `event_id`, `job_id`, `received_at` and `loaded_at` belong to the
    /// pipeline: the body may repeat them unchanged, not change them.
    func replace(_ eventID: String, request: Request) async throws -> JSONResponse {
        guard case .object(let fields) = try await request.decodeJSON(limit: 1 << 20) else {
            throw Problem(.badRequest, code: "invalid_record", detail: "the body must be a JSON object of the record's columns")
        }
        let known = Set(Self.textColumns + Self.jsonColumns + ["event_time"] + Self.fixedColumns)
        if let unknown = fields.keys.first(where: { !known.contains($0) }) {
            throw Problem(.badRequest, code: "unknown_field", detail: "'\(unknown)' is not a column of the warehouse", extra: ["field": .string(unknown)])
        }
        if let given = fields["event_id"], given != .string(eventID) {
            throw Problem(.badRequest, code: "immutable_field", detail: "event_id is the record's key and cannot change", extra: ["field": "event_id"])
        }
        var assignments: [String] = []
        var parameters: [String?] = [eventID]
        func bind(_ column: String, _ parameter: String?, cast: String) {
            parameters.append(parameter)
            assignments.append("\(column) = $\(parameters.count)::\(cast)")
        }
        for column in Self.textColumns {
            switch fields[column] {
            case nil, .null?: bind(column, nil, cast: "text")
            case .string(let text)?: bind(column, text, cast: "text")
            default: throw Problem(.badRequest, code: "wrong_type", detail: "\(column) must be a string or null", extra: ["field": .string(column)])
            }
        }
        for column in Self.jsonColumns {
            switch fields[column] {
            case nil, .null?: bind(column, nil, cast: "jsonb")
            case .object?, .array?: bind(column, fields[column]!.serializedString, cast: "jsonb")
            default: throw Problem(.badRequest, code: "wrong_type", detail: "\(column) must be an object, an array or null", extra: ["field": .string(column)])
            }
        }
        switch fields["event_time"] {
        case nil, .null?: bind("event_time", nil, cast: "timestamptz")
        case .string(let text)?:
            guard Timestamp.milliseconds(text) != nil else {
                throw Problem(.badRequest, code: "wrong_type", detail: "event_time must be an ISO 8601 time", extra: ["field": "event_time"])
            }
            bind("event_time", text, cast: "timestamptz")
        default: throw Problem(.badRequest, code: "wrong_type", detail: "event_time must be an ISO 8601 time or null", extra: ["field": "event_time"])
        }
        let rows: PostgresRows
        let current: JSONValue
        do {
            current = try await record(eventID)
            for column in ["job_id", "received_at", "loaded_at"] {
                if let given = fields[column], given != current[column] {
                    throw Problem(.badRequest, code: "immutable_field", detail: "\(column) belongs to the pipeline and cannot change",
                                  extra: ["field": .string(column)])
                }
            }
            rows = try await pool.query("UPDATE events SET \(assignments.joined(separator: ", ")) WHERE event_id = $1 RETURNING \(Self.rowJSON)", parameters)
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Self.unavailable
        }
        guard let text = rows.scalar else { throw Self.recordNotFound }
        return JSONResponse(status: .ok, value: try JSONParser().parse(text))
    }

    func delete(_ eventID: String) async throws {
        let rows: PostgresRows
        do {
            rows = try await pool.query("DELETE FROM events WHERE event_id = $1 RETURNING 1", [eventID])
        } catch {
            throw Self.unavailable
        }
        guard !rows.rows.isEmpty else { throw Self.recordNotFound }
    }
}

extension WarehouseFunction {
    /// Events, unique users and events by type over `[from, to)`, in total and per window.
    func summary(_ parameter: (String) -> String?) async throws -> JSONResponse {
        let now = Date()
        func time(_ name: String, default fallback: Date) throws -> Date {
            guard let text = parameter(name) else { return fallback }
            guard let milliseconds = Timestamp.milliseconds(text) else {
                throw Problem(.badRequest, code: "invalid_parameter", detail: "\(name) must be an ISO 8601 time", extra: ["parameter": .string(name)])
            }
            return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        }
        let to = try time("to", default: now)
        let from = try time("from", default: to.addingTimeInterval(-3600))
        let windowName = parameter("window") ?? "1m"
        guard let window = Self.windows[windowName] else {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "window must be one of 1m, 5m, 15m, 1h, 1d", extra: ["parameter": "window"])
        }
        guard from < to else {
            throw Problem(.badRequest, code: "invalid_parameter", detail: "from must be before to", extra: ["parameter": "from"])
        }
        let seconds = to.timeIntervalSince(from)
        guard seconds <= Double(maxRange.components.seconds) else {
            throw Problem(.badRequest, code: "range_too_large", detail: "the range may cover at most \(maxRange.components.seconds) seconds",
                          extra: ["parameter": "from"])
        }
        guard seconds / Double(window) <= Double(maxWindows) else {
            throw Problem(.badRequest, code: "range_too_large", detail: "at most \(maxWindows) windows; choose a larger window", extra: ["parameter": "window"])
        }
        let eventType = parameter("event_type")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let fromText = formatter.string(from: from), toText = formatter.string(from: to)
        // One scan of the (event_time, event_type) INCLUDE (user_id) index; grouping sets give
        // the per-window, per-type, per-window-and-type and overall figures at once.
        let rows: PostgresRows
        do {
            rows = try await pool.query("""
                SELECT grouping(w, event_type)::text, to_char(w AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                       event_type, count(*)::text, count(DISTINCT user_id)::text
                FROM (SELECT date_bin(make_interval(secs => $3::integer), event_time, $1::timestamptz) AS w, event_type, user_id
                      FROM events
                      WHERE event_time >= $1::timestamptz AND event_time < $2::timestamptz
                        AND ($4::text IS NULL OR event_type = $4::text)) AS scoped
                GROUP BY GROUPING SETS ((w, event_type), (w), (event_type), ())
                """, [fromText, toText, String(window), eventType])
        } catch {
            throw Self.unavailable
        }
        var total: JSONObject = ["events": 0, "unique_users": 0, "by_event_type": [:]]
        var windows: [(String, JSONObject)] = []
        var indexOfWindow: [String: Int] = [:]  // up to max_windows windows: no linear search per row
        func windowIndex(_ start: String) -> Int {
            if let index = indexOfWindow[start] { return index }
            windows.append((start, ["start": .string(start), "events": 0, "unique_users": 0, "by_event_type": [:]]))
            indexOfWindow[start] = windows.count - 1
            return windows.count - 1
        }
        for row in rows.rows {
            let events = JSONValue.int(Int64(row[3] ?? "0") ?? 0), users = JSONValue.int(Int64(row[4] ?? "0") ?? 0)
            let type = row[2] ?? "unknown"
            switch row[0] {
            case "0":  // window and type
                let index = windowIndex(row[1] ?? "")
                var byType = windows[index].1["by_event_type"]?.objectValue ?? [:]
                byType[type] = events
                windows[index].1["by_event_type"] = .object(byType)
            case "1":  // window
                let index = windowIndex(row[1] ?? "")
                windows[index].1["events"] = events
                windows[index].1["unique_users"] = users
            case "2":  // type
                var byType = total["by_event_type"]?.objectValue ?? [:]
                byType[type] = events
                total["by_event_type"] = .object(byType)
            default:  // everything
                total["events"] = events
                total["unique_users"] = users
            }
        }
        windows.sort { $0.0 < $1.0 }
        var answer: JSONObject = [
            "from": .string(fromText), "to": .string(toText), "window": .string(windowName),
            "total": .object(total), "windows": .array(windows.map { .object($0.1) }),
        ]
        if let eventType { answer["event_type"] = .string(eventType) }
        return JSONResponse(status: .ok, value: .object(answer))
    }
}
