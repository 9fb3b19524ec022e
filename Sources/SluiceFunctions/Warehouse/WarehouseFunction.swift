import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Sluice
import SluiceHTTP
import SluicePostgres
import SluicePrivacy

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
    /// How often the rollups of the summary are brought up to date.
    let rollupInterval: Duration
    /// validate's pii-mask: what a `PUT` stores is masked as the pipeline masks events.
    let mask: PIIMaskMiddleware
    let datasets: DatasetStore
    /// The gateway's restrictions of datasets to roles (its `config.datasets`): a restricted
    /// dataset is left out of the list, and its profile refused, for callers without one.
    let datasetRoles: [String: Set<String>]
    /// Besides admin, the roles that may see stored values in a dataset's profile
    /// (`config.record_readers`, by default the roles that read records: analyst).
    let recordReaders: Set<String>

    /// Columns a `PUT` sets (all of them: a missing one becomes null), by kind.
    static let textColumns = ["event_type", "user_id", "session_id", "source", "version", "device_type", "device_class",
                              "os_version", "app_version", "country", "country_name", "region"]
    static let jsonColumns = ["properties", "custom_data", "attributes"]
    /// Columns the pipeline owns: a `PUT` may repeat them unchanged, never change them.
    static let fixedColumns = ["event_id", "job_id", "received_at", "loaded_at"]
    static let windows: [String: Int] = ["1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400]

    public init(setup: PipelineSetup) throws {
        pool = setup.dependencies.postgres
        datasets = setup.dependencies.datasets
        logger = setup.logger
        maxRange = try setup.manifest.configDuration("max_range", default: .seconds(7 * 86400))
        maxWindows = Int(setup.manifest.config["max_windows"]?.intValue ?? 10_080)
        rollupInterval = try setup.manifest.configDuration("rollup_interval", default: .milliseconds(500))
        mask = try PipelinePII.mask(setup: setup)
        recordReaders = Set((setup.manifest.config["record_readers"]?.arrayValue ?? ["analyst"]).compactMap(\.stringValue))
        datasetRoles = Self.datasetRoles(in: try? setup.dependencies.manifests.load("gateway"))
    }

    /// The gateway's `config.datasets` (dataset name → roles), read from its manifest: what it
    /// restricts on every route, this function also leaves out of what it lists.
    static func datasetRoles(in gateway: Manifest?) -> [String: Set<String>] {
        guard case .object(let object)? = gateway?.config["datasets"] else { return [:] }
        var roles: [String: Set<String>] = [:]
        for (name, value) in object { roles[name] = Set((value.arrayValue ?? []).compactMap(\.stringValue)) }
        return roles
    }

    public var backgroundServices: [any Service] {
        [RollupRefresher(pool: pool, logger: logger, interval: rollupInterval, batch: 5000)]
    }

    public func addRoutes(to router: Router<SluiceRequestContext>) {
        router.get("/api/v1/data/{event_id}") { _, context -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.record(try context.parameters.require("event_id")))
        }
        router.put("/api/v1/data/{event_id}") { request, context -> JSONResponse in
            try await self.checkEventsWriter(context.caller)
            return try await self.replace(try context.parameters.require("event_id"), request: request)
        }
        router.delete("/api/v1/data/{event_id}") { _, context -> Response in
            try await self.checkEventsWriter(context.caller)
            try await self.delete(try context.parameters.require("event_id"))
            return Response(status: .noContent)
        }
        router.get("/api/v1/analytics/summary") { request, _ -> JSONResponse in
            let query = request.uri.queryParameters
            return try await self.summary { query.get($0) }
        }
        addDatasetRoutes(to: router)
    }

    /// Replacing or deleting an event takes what it takes for any dataset's record: `admin`, or
    /// a role the `events` spec names in `writers` (its file; `events` has no owner).
    func checkEventsWriter(_ caller: Caller?) async throws {
        guard try await storedDataset("events").mayWrite(caller) else { throw DatasetRoutes.notOwner }
    }

    static let recordNotFound = Problem(.notFound, code: "record_not_found", detail: "no record has this event_id")
    static let unavailable = Problem(.serviceUnavailable, code: "warehouse_unavailable", detail: "the warehouse is not available; try again")

    /// The JSON of one row, timestamps in UTC ISO 8601.
    static let rowJSON: PostgresQuery = """
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
            rows = try await pool.query("SELECT \(Self.rowJSON) FROM events WHERE event_id = \(eventID)")
        } catch {
            throw Self.unavailable
        }
        guard let text = try rows.scalar(String.self) else { throw Self.recordNotFound }
        return try JSONParser().parse(text)
    }

    /// Replaces the record's columns with the body's (RFC 9110 PUT: a column the body leaves
    /// out becomes null). `event_id`, `job_id`, `received_at` and `loaded_at` belong to the
    /// pipeline: the body may repeat them unchanged, not change them. The other columns are
    /// masked as validate's pii-mask masks events (a `user_id` becomes its pseudonym, a number
    /// given there its decimal form's; personal data in strings, keys and numbers is masked).
    func replace(_ eventID: String, request: Request) async throws -> JSONResponse {
        guard case .object(var fields) = try await request.decodeJSON(limit: 1 << 20) else {
            throw Problem(.badRequest, code: "invalid_record", detail: "the body must be a JSON object of the record's columns")
        }
        let known = Set(Self.textColumns + Self.jsonColumns + ["event_time"] + Self.fixedColumns)
        if let unknown = fields.keys.first(where: { !known.contains($0) }) {
            throw Problem(.badRequest, code: "unknown_field", detail: "'\(unknown)' is not a column of the warehouse", extra: ["field": .string(unknown)])
        }
        if let given = fields["event_id"], given != .string(eventID) {
            throw Problem(.badRequest, code: "immutable_field", detail: "event_id is the record's key and cannot change", extra: ["field": "event_id"])
        }
        var columns = JSONObject()
        for (column, value) in fields where Self.textColumns.contains(column) || Self.jsonColumns.contains(column) { columns[column] = value }
        // The events dataset's rules (its subject and `pii` fields), as for any dataset's record.
        let plan: DatasetMasking
        do {
            plan = try await datasets.spec("events")?.spec.masking ?? .none
        } catch {
            throw Self.unavailable
        }
        if case .object(let masked) = mask.mask(.object(columns), plan: plan) {
            for (column, value) in masked { fields[column] = value }
        }
        var assignments: [PostgresQuery] = []
        func bind(_ column: String, _ parameter: String?, cast: PostgresQuery) {
            assignments.append("\(identifier: column) = \(parameter)::\(cast)")
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
            rows = try await pool.query("""
                UPDATE events SET \(assignments.joined(separator: ", ")) WHERE event_id = \(eventID) RETURNING \(Self.rowJSON)
                """)
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Self.unavailable
        }
        guard let text = try rows.scalar(String.self) else { throw Self.recordNotFound }
        return JSONResponse(status: .ok, value: try JSONParser().parse(text))
    }

    func delete(_ eventID: String) async throws {
        let rows: PostgresRows
        do {
            rows = try await pool.query("DELETE FROM events WHERE event_id = \(eventID) RETURNING 1")
        } catch {
            throw Self.unavailable
        }
        guard !rows.isEmpty else { throw Self.recordNotFound }
    }
}
