import Hummingbird
import Sluice
import SluiceHTTP
import SluicePostgres

/// The datasets' read API: `GET /api/v1/datasets` (each with its row count, bytes and last
/// load) and `GET /api/v1/datasets/{name}` (its spec and a profile of every column). Table and
/// column names come from the catalog's specs, checked when they were registered, and are
/// written as quoted identifiers.
///
/// Both cost a bounded amount whatever a table's size: a table estimated at
/// ``exactCountLimit`` rows or more is counted by PostgreSQL's estimate, and a profile is
/// computed from a sample of at most ``profileSampleRows`` rows (whole pages picked at random,
/// the same pages for every statement of one profile), each statement under a time limit.
/// Datasets the gateway's `config.datasets` restricts to roles the caller lacks are left out
/// of the list, and a profile shows stored values (min, max, top) only to callers who may read
/// records (`config.record_readers`, and admin).
extension WarehouseFunction {
    func addDatasetRoutes(to router: Router<SluiceRequestContext>) {
        router.get("/api/v1/datasets") { _, context -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.listDatasets(for: context.caller))
        }
        router.get("/api/v1/datasets/{name}") { _, context -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.dataset(try context.parameters.require("name"), for: context.caller))
        }
        addRecordRoutes(to: router)
    }

    /// Whether `caller` may see dataset `name` at all: the gateway's restriction of it.
    func mayRead(_ name: String, caller: Caller?) -> Bool {
        guard let roles = datasetRoles[name] else { return true }
        guard let caller else { return false }
        return caller.has("admin") || !caller.roles.isDisjoint(with: roles)
    }

    /// Whether `caller` may see the values stored in records.
    func mayReadRecords(_ caller: Caller?) -> Bool {
        guard let caller else { return false }
        return caller.has("admin") || !caller.roles.isDisjoint(with: recordReaders)
    }

    func listDatasets(for caller: Caller?) async throws -> JSONValue {
        let all: [DatasetStore.StoredDataset]
        do {
            all = try await datasets.all()
        } catch {
            throw Self.unavailable
        }
        var items: [JSONValue] = []
        for stored in all where mayRead(stored.spec.name, caller: caller) {
            var item = try await summary(of: stored)
            item["fields"] = .int(Int64(stored.spec.fields.count))
            items.append(.object(item))
        }
        return ["datasets": .array(items)]
    }

    func dataset(_ name: String, for caller: Caller?) async throws -> JSONValue {
        let found: DatasetStore.StoredDataset?
        do {
            found = try await datasets.spec(name)
        } catch {
            throw Self.unavailable
        }
        guard let stored = found, mayRead(name, caller: caller) else { throw DatasetRoutes.notFound }
        var object = try await summary(of: stored)
        object["spec"] = stored.spec.json
        let (profile, sampled) = try await profile(stored.spec, values: mayReadRecords(caller))
        object["profile"] = profile
        object["profile_rows"] = .int(Int64(sampled))
        return .object(object)
    }

    /// Tables estimated at this many rows or more are counted by PostgreSQL's estimate.
    static let exactCountLimit: Double = 1_000_000
    /// The most rows a profile reads.
    static let profileSampleRows = 10_000

    /// Name, table, version, row count, bytes, when created and last loaded. A table estimated
    /// at ``exactCountLimit`` rows or more gets the estimate (`rows_estimated: true`) and no last
    /// load: neither is worth a scan of millions of rows on every call.
    func summary(of stored: DatasetStore.StoredDataset) async throws -> JSONObject {
        let table = DatasetStore.table(stored.spec)
        let name = DatasetStore.identifierText(stored.spec.table.schema) + "." + DatasetStore.identifierText(stored.spec.table.name)
        let limit = Self.exactCountLimit
        let row: (Int64, Int64, String?, Bool)
        do {
            row = try await pool.withTransaction { connection in
                try connection.executeUnparameterized("SET LOCAL statement_timeout = 5000")
                let estimate = try connection.query("SELECT reltuples::float8, pg_total_relation_size(oid) FROM pg_class WHERE oid = \(name)::regclass")
                    .first!.decode((Double, Int64).self)
                if estimate.0 >= limit { return (Int64(estimate.0), estimate.1, nil, true) }
                let exact = try connection.query("SELECT count(*), \(SQLText.iso("max(loaded_at)")) FROM \(table)").first!.decode((Int64, String?).self)
                return (exact.0, estimate.1, exact.1, false)
            }
        } catch {
            throw Self.unavailable
        }
        var object: JSONObject = [
            "name": .string(stored.spec.name), "table": .string(stored.spec.table.description), "version": .int(Int64(stored.version)),
            "origin": .string(stored.origin), "rows": .int(row.0), "bytes": .int(row.1),
            "created_at": .string(stored.createdAt), "updated_at": .string(stored.updatedAt),
            "last_loaded_at": row.2.map(JSONValue.string) ?? .null,
        ]
        if row.3 { object["rows_estimated"] = true }
        return object
    }

    /// A timestamp as RFC 3339 text in UTC, with microseconds.
    static func isoText(_ value: PostgresQuery) -> PostgresQuery {
        "to_char((\(value)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    }

    /// The most top values a profile lists per column.
    static let profileTopValues = 5

    /// Per column, over a sample of at most ``profileSampleRows`` rows (the whole table when it
    /// is smaller): nulls, distinct values, min and max (as text), and the most frequent values
    /// with their counts. One statement for the counts, one per column for its top values, all
    /// over the same pages, each under a 5 s limit. Columns of personal data (the `pii` fields and
    /// the subject) show counts only, and so does every column when `values` is false (a caller
    /// who may not read records). Answers the profiles and how many rows were read.
    func profile(_ spec: DatasetSpec, values: Bool) async throws -> (JSONValue, Int) {
        let source = DatasetStore.table(spec)
        let name = DatasetStore.identifierText(spec.table.schema) + "." + DatasetStore.identifierText(spec.table.name)
        let columns = spec.columns
        let personal = Set(spec.fields.filter { $0.pii || $0.path == spec.subject }.compactMap(\.column))
        let sampleRows = Self.profileSampleRows
        do {
            return try await pool.withTransaction { connection in
                try connection.executeUnparameterized("SET LOCAL statement_timeout = 5000")
                // Whole pages at random (SYSTEM), enough of them for about twice the rows wanted,
                // the same pages for every statement (REPEATABLE), cut at the rows wanted.
                let estimate = try connection.query("SELECT reltuples::float8 FROM pg_class WHERE oid = \(name)::regclass").first!.decode(Double.self)
                let percent = estimate <= Double(2 * sampleRows) ? 100 : max(0.0001, 100 * Double(2 * sampleRows) / estimate)
                let table: PostgresQuery = "(SELECT * FROM \(source) TABLESAMPLE SYSTEM (\(percent)::float8) REPEATABLE (7) LIMIT \(sampleRows)::integer) t"
                let sampled = try connection.query("SELECT count(*) FROM \(table)").first!.decode(Int.self)
                var profiles: [JSONValue] = []
                // Columns in groups, so that one statement stays well under PostgreSQL's limits.
                for group in stride(from: 0, to: columns.count, by: 50).map({ Array(columns[$0..<min($0 + 50, columns.count)]) }) {
                    let parts: [PostgresQuery] = group.map { column in
                        let name: PostgresQuery = "\(identifier: column.name)"
                        let ordered = [.object, .array, .json, .boolean].contains(column.type) == false && !personal.contains(column.name) && values
                        let minMax: PostgresQuery = !ordered ? "NULL::text, NULL::text"
                            : column.type == .timestamp ? "\(Self.isoText("min(\(name))")), \(Self.isoText("max(\(name))"))"
                            : "min(\(name))::text, max(\(name))::text"
                        let distinct: PostgresQuery = column.type == .boolean || !ordered ? "count(DISTINCT \(name)::text)" : "count(DISTINCT \(name))"
                        return "count(*) - count(\(name)), \(distinct), \(minMax)"
                    }
                    let row = try connection.query("SELECT \(parts.joined(separator: ", ")) FROM \(table)").first!
                    for (index, column) in group.enumerated() {
                        let base = index * 4
                        let nulls = try row.decode(Int64.self, at: base), distinct = try row.decode(Int64.self, at: base + 1)
                        let low = try row.decode(String?.self, at: base + 2), high = try row.decode(String?.self, at: base + 3)
                        let name: PostgresQuery = "\(identifier: column.name)"
                        let text: PostgresQuery = column.type == .timestamp ? Self.isoText(name) : "\(name)::text"
                        let top = personal.contains(column.name) || !values ? [] : try connection.query("""
                            SELECT \(text), count(*) FROM \(table) WHERE \(name) IS NOT NULL
                            GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT \(Self.profileTopValues)::integer
                            """).decode((String, Int64).self)
                        profiles.append([
                            "column": .string(column.name), "type": .string(column.type.rawValue), "nulls": .int(nulls),
                            "distinct": .int(distinct), "min": low.map(JSONValue.string) ?? .null, "max": high.map(JSONValue.string) ?? .null,
                            "top": .array(top.map { ["value": .string($0.0), "count": .int($0.1)] }),
                        ])
                    }
                }
                return (.array(profiles), sampled)
            }
        } catch {
            throw Self.unavailable
        }
    }
}
