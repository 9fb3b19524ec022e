import Foundation
import Hummingbird
import Sluice
import SluiceHTTP
import SluicePostgres

/// A dataset's records: pages in key order (`GET /api/v1/datasets/{name}/records`, filters by
/// column, keyset cursors) and one record by its key (`GET|PUT|DELETE …/records/{key}`). A key
/// of several columns is written `a,b` (or, when a value holds a comma, as a JSON array
/// `["a","b"]`). Every value is a bound parameter cast to its column's type; every name comes
/// from the dataset's spec.
extension WarehouseFunction {
    func addRecordRoutes(to router: Router<SluiceRequestContext>) {
        router.get("/api/v1/datasets/{name}/records") { request, context -> JSONResponse in
            let query = request.uri.queryParameters
            var parameters: [(String, String)] = []
            for (name, value) in query { parameters.append((String(name), String(value))) }
            return JSONResponse(status: .ok, value: try await self.records(try context.parameters.require("name"), parameters: parameters))
        }
        router.get("/api/v1/datasets/{name}/records/{key}") { _, context -> JSONResponse in
            let (stored, key) = try await self.recordKey(context)
            guard let record = try await self.fetchRecord(stored.spec, key: key) else { throw Self.datasetRecordNotFound }
            return JSONResponse(status: .ok, value: record)
        }
        router.put("/api/v1/datasets/{name}/records/{key}") { request, context -> JSONResponse in
            let (stored, key) = try await self.recordKey(context)
            guard stored.mayWrite(context.caller) else { throw DatasetRoutes.notOwner }
            return JSONResponse(status: .ok, value: try await self.replaceRecord(stored.spec, key: key, body: try await request.decodeJSON(limit: 1 << 20)))
        }
        router.delete("/api/v1/datasets/{name}/records/{key}") { _, context -> Response in
            let (stored, key) = try await self.recordKey(context)
            guard stored.mayWrite(context.caller) else { throw DatasetRoutes.notOwner }
            try await self.deleteRecord(stored.spec, key: key)
            return Response(status: .noContent)
        }
    }

    static let datasetRecordNotFound = Problem(.notFound, code: "record_not_found", detail: "the dataset has no record with this key")
    /// The most records one page may hold.
    static let maxRecordPage = 1000

    func storedDataset(_ name: String) async throws -> DatasetStore.StoredDataset {
        let found: DatasetStore.StoredDataset?
        do {
            found = try await datasets.spec(name)
        } catch {
            throw Self.unavailable
        }
        guard let found else { throw DatasetRoutes.notFound }
        return found
    }

    func recordKey(_ context: SluiceRequestContext) async throws -> (DatasetStore.StoredDataset, [String]) {
        let stored = try await storedDataset(try context.parameters.require("name"))
        return (stored, try Self.parseKey(try context.parameters.require("key"), spec: stored.spec))
    }

    /// The key values (as text, each read as its column's type) of a path segment.
    static func parseKey(_ segment: String, spec: DatasetSpec) throws -> [String] {
        var parts: [String]
        if spec.key.count == 1 {
            parts = [segment]
        } else if segment.hasPrefix("[") {
            guard case .array(let items)? = try? JSONParser().parse(Array(segment.utf8)) else {
                throw Problem(.badRequest, code: "invalid_key", detail: "the key is not a JSON array of \(spec.key.count) values")
            }
            parts = items.map { item in if case .string(let text) = item { text } else { item.serializedString } }
        } else {
            parts = segment.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        guard parts.count == spec.key.count else {
            throw Problem(.badRequest, code: "invalid_key",
                          detail: "the key is \(spec.key.count) values (\(spec.key.joined(separator: ", "))), comma-separated or a JSON array",
                          extra: ["columns": .array(spec.key.map(JSONValue.string))])
        }
        return try zip(spec.key, parts).map { column, text in
            try Self.sqlText(.string(text), column: column, spec: spec, code: "invalid_key")
        }
    }

    /// `value` as the text of a value of `column`; a problem naming the column when it is not one.
    static func sqlText(_ value: JSONValue, column: String, spec: DatasetSpec, code: String) throws -> String {
        guard let type = spec.column(column)?.type else {
            throw Problem(.badRequest, code: "unknown_field", detail: "'\(DatasetSpec.quotedForMessage(column))' is not a column of the dataset",
                          extra: ["field": .string(DatasetSpec.quotedForMessage(column))])
        }
        guard case .success(let typed) = FieldsShape.read(value, as: type) else {
            throw Problem(.badRequest, code: code, detail: "\(column) must be a value of type \(type.rawValue)", extra: ["field": .string(column)])
        }
        let text: String
        if case .string(let string) = typed { text = string } else { text = typed.serializedString }
        // PostgreSQL's text holds no NUL.
        guard !text.utf8.contains(0) else {
            throw Problem(.badRequest, code: code, detail: "\(column) must not hold a NUL character", extra: ["field": .string(column)])
        }
        return text
    }

    /// `key` columns equal to `values`, each cast to its type.
    static func keyCondition(_ spec: DatasetSpec, _ values: [String]) -> PostgresQuery {
        zip(spec.key, values).map { (column: String, value: String) -> PostgresQuery in
            "\(identifier: column) = \(value)::\(DatasetStore.sqlType(spec.column(column)!.type))"
        }.joined(separator: " AND ")
    }

    func fetchRecord(_ spec: DatasetSpec, key: [String]) async throws -> JSONValue? {
        let rows: PostgresRows
        do {
            rows = try await pool.query("SELECT to_jsonb(t)::text FROM \(DatasetStore.table(spec)) t WHERE \(Self.keyCondition(spec, key))")
        } catch {
            throw Self.unavailable
        }
        return try rows.scalar(String.self).map { try JSONParser().parse(Array($0.utf8)) }
    }

    /// A page of records in key order: `limit` (1–1000, default 50), `after` (the previous
    /// page's `next_cursor`), and `COLUMN=VALUE` for records whose column equals the value.
    func records(_ name: String, parameters: [(String, String)]) async throws -> JSONValue {
        let stored = try await storedDataset(name)
        let spec = stored.spec
        var limit = 50
        var after: [String]?
        var conditions: [PostgresQuery] = []
        for (parameter, value) in parameters {
            switch parameter {
            case "limit":
                guard let number = Int(value), (1...Self.maxRecordPage).contains(number) else {
                    throw Problem(.badRequest, code: "invalid_parameter", detail: "limit must be an integer from 1 to \(Self.maxRecordPage)",
                                  extra: ["parameter": "limit"])
                }
                limit = number
            case "after":
                after = try Self.decodeCursor(value, spec: spec)
            default:
                guard let column = spec.column(parameter), ![.object, .array, .json].contains(column.type) else {
                    throw Problem(.badRequest, code: "invalid_parameter",
                                  detail: "'\(DatasetSpec.quotedForMessage(parameter))' is not a column to filter by (nor limit or after)",
                                  extra: ["parameter": .string(DatasetSpec.quotedForMessage(parameter))])
                }
                let text = try Self.sqlText(.string(value), column: column.name, spec: spec, code: "invalid_parameter")
                conditions.append("\(identifier: column.name) = \(text)::\(DatasetStore.sqlType(column.type))")
            }
        }
        let keyList = spec.key.map { (column: String) -> PostgresQuery in "\(identifier: column)" }.joined(separator: ", ")
        if let after {
            let values = zip(spec.key, after).map { (column: String, value: String) -> PostgresQuery in
                "\(value)::\(DatasetStore.sqlType(spec.column(column)!.type))"
            }.joined(separator: ", ")
            conditions.append("(\(keyList)) > (\(values))")
        }
        let filter: PostgresQuery = conditions.isEmpty ? "true" : conditions.joined(separator: " AND ")
        // The last key of the page, as text each column's type reads back (timestamps in UTC with microseconds).
        let keyTexts = spec.key.map { (column: String) -> PostgresQuery in
            spec.column(column)?.type == .timestamp ? Self.isoText("\(identifier: column)") : "\(identifier: column)::text"
        }.joined(separator: ", ")
        let rows: PostgresRows
        do {
            rows = try await pool.query("""
                SELECT to_jsonb(t)::text, \(keyTexts) FROM \(DatasetStore.table(spec)) t
                WHERE \(filter) ORDER BY \(keyList) LIMIT \(limit + 1)::integer
                """)
        } catch {
            throw Self.unavailable
        }
        var records: [JSONValue] = []
        var last: [String] = []
        for row in rows.prefix(limit) {
            records.append(try JSONParser().parse(Array(try row.decode(String.self, at: 0).utf8)))
            last = try (1...spec.key.count).map { try row.decode(String.self, at: $0) }
        }
        let next: JSONValue = rows.count > limit ? .string(Self.encodeCursor(last)) : .null
        return ["dataset": .string(spec.name), "records": .array(records), "next_cursor": next]
    }

    /// A cursor: the last key's values as a JSON array, base64url without padding.
    static func encodeCursor(_ key: [String]) -> String {
        Data(JSONValue.array(key.map(JSONValue.string)).serializedBytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decodeCursor(_ text: String, spec: DatasetSpec) throws -> [String] {
        let invalid = Problem(.badRequest, code: "invalid_parameter", detail: "after is not a cursor of this dataset", extra: ["parameter": "after"])
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        guard text.utf8.count <= 8192, let data = Data(base64Encoded: base64), case .array(let items)? = try? JSONParser().parse(Array(data)),
              items.count == spec.key.count
        else { throw invalid }
        return try zip(spec.key, items).map { column, item in
            guard case .string(let value) = item, let type = spec.column(column)?.type, !value.utf8.contains(0),
                  case .success = FieldsShape.read(.string(value), as: type)
            else { throw invalid }
            return value
        }
    }

    /// Replaces the record's columns with the body's (a column left out becomes null); the key
    /// columns may be repeated, not changed; `job_id`, `received_at` and `loaded_at` belong to the
    /// pipeline. The columns are masked by the dataset's own rules, as validate's pii-mask masks
    /// its records: its subject and `pii` columns become pseudonyms (an erasure finds them), its
    /// typed columns are stored as sent, every other string is scanned.
    func replaceRecord(_ spec: DatasetSpec, key: [String], body: JSONValue) async throws -> JSONValue {
        guard case .object(let given) = body else {
            throw Problem(.badRequest, code: "invalid_record", detail: "the body must be a JSON object of the record's columns")
        }
        for name in given.keys {
            if DatasetSpec.systemColumns.contains(name) {
                throw Problem(.badRequest, code: "immutable_field", detail: "\(name) belongs to the pipeline and cannot be set", extra: ["field": .string(name)])
            }
            if spec.column(name) == nil {
                throw Problem(.badRequest, code: "unknown_field", detail: "'\(DatasetSpec.quotedForMessage(name))' is not a column of the dataset",
                              extra: ["field": .string(DatasetSpec.quotedForMessage(name))])
            }
        }
        for (index, column) in spec.key.enumerated() {
            if let value = given[column], try Self.sqlText(value, column: column, spec: spec, code: "wrong_type") != key[index] {
                throw Problem(.badRequest, code: "immutable_field", detail: "\(column) is part of the record's key and cannot change", extra: ["field": .string(column)])
            }
        }
        let masked = mask.mask(.object(given), plan: spec.masking).objectValue ?? given
        var assignments: [PostgresQuery] = []
        for column in spec.columns where !spec.key.contains(column.name) {
            let text: String?
            switch masked[column.name] {
            case nil, .null?:
                text = nil
            case let value? where [.object, .array, .json].contains(column.type):
                guard case .success = FieldsShape.read(value, as: column.type) else {
                    throw Problem(.badRequest, code: "wrong_type", detail: "\(column.name) must be a value of type \(column.type.rawValue)",
                                  extra: ["field": .string(column.name)])
                }
                text = value.serializedString
            case let value?:
                text = try Self.sqlText(value, column: column.name, spec: spec, code: "wrong_type")
            }
            assignments.append("\(identifier: column.name) = \(text)::\(DatasetStore.sqlType(column.type))")
        }
        guard !assignments.isEmpty else {
            guard let record = try await fetchRecord(spec, key: key) else { throw Self.datasetRecordNotFound }
            return record
        }
        let rows: PostgresRows
        do {
            rows = try await pool.query("""
                UPDATE \(DatasetStore.table(spec)) t SET \(assignments.joined(separator: ", ")) WHERE \(Self.keyCondition(spec, key))
                RETURNING to_jsonb(t)::text
                """)
        } catch {
            throw Self.unavailable
        }
        guard let text = try rows.scalar(String.self) else { throw Self.datasetRecordNotFound }
        return try JSONParser().parse(Array(text.utf8))
    }

    func deleteRecord(_ spec: DatasetSpec, key: [String]) async throws {
        let rows: PostgresRows
        do {
            rows = try await pool.query("DELETE FROM \(DatasetStore.table(spec)) WHERE \(Self.keyCondition(spec, key)) RETURNING 1")
        } catch {
            throw Self.unavailable
        }
        guard rows.count == 1 else { throw Self.datasetRecordNotFound }
    }
}
