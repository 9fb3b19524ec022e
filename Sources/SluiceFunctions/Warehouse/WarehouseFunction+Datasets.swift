import Hummingbird
import Sluice
import SluiceHTTP
import SluicePostgres

/// The datasets' read API: `GET /api/v1/datasets` (each with its row count, bytes and last
/// load) and `GET /api/v1/datasets/{name}` (its spec and a profile of every column). Table and
/// column names come from the catalog's specs, checked when they were registered, and are
/// written as quoted identifiers.
extension WarehouseFunction {
    func addDatasetRoutes(to router: Router<SluiceRequestContext>) {
        router.get("/api/v1/datasets") { _, _ -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.listDatasets())
        }
        router.get("/api/v1/datasets/{name}") { _, context -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.dataset(try context.parameters.require("name")))
        }
        addRecordRoutes(to: router)
    }

    func listDatasets() async throws -> JSONValue {
        let all: [DatasetStore.StoredDataset]
        do {
            all = try await datasets.all()
        } catch {
            throw Self.unavailable
        }
        var items: [JSONValue] = []
        for stored in all {
            var item = try await summary(of: stored)
            item["fields"] = .int(Int64(stored.spec.fields.count))
            items.append(.object(item))
        }
        return ["datasets": .array(items)]
    }

    func dataset(_ name: String) async throws -> JSONValue {
        let found: DatasetStore.StoredDataset?
        do {
            found = try await datasets.spec(name)
        } catch {
            throw Self.unavailable
        }
        guard let stored = found else { throw DatasetRoutes.notFound }
        var object = try await summary(of: stored)
        object["spec"] = stored.spec.json
        object["profile"] = try await profile(stored.spec)
        return .object(object)
    }

    /// Name, table, version, row count, bytes, when created and last loaded.
    func summary(of stored: DatasetStore.StoredDataset) async throws -> JSONObject {
        let table = DatasetStore.table(stored.spec)
        let name = DatasetStore.identifierText(stored.spec.table.schema) + "." + DatasetStore.identifierText(stored.spec.table.name)
        let row: (Int64, Int64, String?)
        do {
            row = try await pool.withConnection { connection in
                try connection.query("""
                    SELECT count(*), pg_total_relation_size(\(name)::regclass), \(SQLText.iso("max(loaded_at)")) FROM \(table)
                    """).first!.decode((Int64, Int64, String?).self)
            }
        } catch {
            throw Self.unavailable
        }
        return [
            "name": .string(stored.spec.name), "table": .string(stored.spec.table.description), "version": .int(Int64(stored.version)),
            "origin": .string(stored.origin), "rows": .int(row.0), "bytes": .int(row.1),
            "created_at": .string(stored.createdAt), "updated_at": .string(stored.updatedAt),
            "last_loaded_at": row.2.map(JSONValue.string) ?? .null,
        ]
    }

    /// A timestamp as RFC 3339 text in UTC, with microseconds.
    static func isoText(_ value: PostgresQuery) -> PostgresQuery {
        "to_char((\(value)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    }

    /// The most top values a profile lists per column.
    static let profileTopValues = 5

    /// Per column: nulls, distinct values (exact), min and max (as text), and the most frequent
    /// values with their counts. One scan for the counts, one per column for its top values.
    /// Columns of personal data (the `pii` fields and the subject) show counts only.
    func profile(_ spec: DatasetSpec) async throws -> JSONValue {
        let table = DatasetStore.table(spec)
        let columns = spec.columns
        let personal = Set(spec.fields.filter { $0.pii || $0.path == spec.subject }.compactMap(\.column))
        do {
            return try await pool.withConnection { connection in
                var profiles: [JSONValue] = []
                // Columns in groups, so that one statement stays well under PostgreSQL's limits.
                for group in stride(from: 0, to: columns.count, by: 50).map({ Array(columns[$0..<min($0 + 50, columns.count)]) }) {
                    let parts: [PostgresQuery] = group.map { column in
                        let name: PostgresQuery = "\(identifier: column.name)"
                        let ordered = [.object, .array, .json, .boolean].contains(column.type) == false && !personal.contains(column.name)
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
                        let top = personal.contains(column.name) ? [] : try connection.query("""
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
                return .array(profiles)
            }
        } catch {
            throw Self.unavailable
        }
    }
}
