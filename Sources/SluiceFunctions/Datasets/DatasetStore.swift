import Foundation
import Logging
import Sluice
import SluiceHTTP
import SluicePostgres
import Synchronization

/// The one owner of datasets: the catalog table `dataset_specs` (each dataset's spec and
/// version) and every dataset's own table, created and altered from its spec.
///
/// Stages read specs through ``spec(_:atLeast:)``, cached per process: a chunk names the version
/// it was received under, and a cached spec older than that is read again, so a column added
/// while uploads continue reaches every stage before the first record that holds it.
public final class DatasetStore: Sendable {
    let pool: PostgresPool
    let cache = Mutex<[String: Entry]>([:])
    /// Specs given at creation, never read from the catalog (for tests of one stage).
    private let fixed: [String: StoredDataset]?

    struct Entry: Sendable {
        var stored: StoredDataset
        var readAt: ContinuousClock.Instant
    }

    /// How long a cached spec is used without asking again (a chunk that names a newer version
    /// asks at once).
    static let cacheLifetime: Duration = .seconds(5)

    public init(pool: PostgresPool) {
        self.pool = pool
        fixed = nil
    }

    /// A store that answers `specs` (each at version 1) and nothing else, without a database:
    /// for tests of a stage alone.
    public init(fixed specs: [DatasetSpec], pool: PostgresPool) {
        self.pool = pool
        fixed = Dictionary(specs.map { ($0.name, StoredDataset(spec: $0, version: 1, origin: "file", createdAt: "", updatedAt: "", owner: nil)) },
                           uniquingKeysWith: { $1 })
    }

    /// A dataset as the catalog holds it.
    public struct StoredDataset: Sendable {
        public var spec: DatasetSpec
        public var version: Int
        /// `file` (declared in the datasets folder), `api` (POST /api/v1/datasets) or `detected`.
        public var origin: String
        public var createdAt: String
        public var updatedAt: String
        /// Who created it through the API or by a first upload (``Caller/ownerKey``, the SHA-256
        /// of the subject); nil for a dataset from a file.
        public var owner: String?

        /// Whether `caller` may change the spec and replace or delete records: its owner,
        /// `admin`, or a role the spec grants (`writers`).
        public func mayWrite(_ caller: Caller?) -> Bool {
            guard let caller else { return false }
            if caller.roles.contains("admin") { return true }
            if let owner, owner == caller.ownerKey { return true }
            return !caller.roles.isDisjoint(with: spec.writers)
        }
    }

    /// What registering a spec did.
    public struct Registration: Sendable {
        public var stored: StoredDataset
        public var created: Bool
        public var changes: [DatasetSpec.TableChange]
    }

    // MARK: - Reading

    /// Dataset `name`, at least at `version` when given; nil when there is no such dataset.
    /// While PostgreSQL cannot be read, a spec read before (at a version that will do) is
    /// answered: routing a chunk, or a stage that needs no database, does not stop with it.
    public func spec(_ name: String, atLeast version: Int? = nil) async throws -> StoredDataset? {
        if let fixed { return fixed[name] }
        let now = ContinuousClock.now
        let cached = cache.withLock { $0[name] }.flatMap { $0.stored.version >= (version ?? 0) ? $0 : nil }
        if let cached, now - cached.readAt < Self.cacheLifetime { return cached.stored }
        let read: StoredDataset?
        do {
            read = try await pool.withConnection { connection in try Self.read(name, on: connection) }
        } catch let error as PostgresError where error.code == .unavailable {
            guard let cached else { throw error }
            return cached.stored
        }
        guard let stored = read else {
            _ = cache.withLock { $0.removeValue(forKey: name) }
            return nil
        }
        cache.withLock { $0[name] = Entry(stored: stored, readAt: now) }
        return stored
    }

    /// Every dataset, by name.
    public func all() async throws -> [StoredDataset] {
        try await pool.withConnection { connection in
            let rows = try connection.query("""
                SELECT name, version, spec::text, origin, \(SQLText.iso("created_at")), \(SQLText.iso("updated_at")), owner
                FROM dataset_specs ORDER BY name
                """)
            return try rows.decode((String, Int, String, String, String, String, String?).self).map { name, version, text, origin, created, updated, owner in
                StoredDataset(spec: try Self.decodeSpec(text, name: name), version: version, origin: origin, createdAt: created, updatedAt: updated,
                              owner: owner)
            }
        }
    }

    /// Every dataset, read on `connection` (inside the caller's transaction).
    static func readAll(on connection: PostgresConnection) throws -> [DatasetSpec] {
        try connection.query("SELECT name, spec::text FROM dataset_specs ORDER BY name").decode((String, String).self).map { name, text in
            try decodeSpec(text, name: name)
        }
    }

    static func read(_ name: String, on connection: PostgresConnection) throws -> StoredDataset? {
        let rows = try connection.query("""
            SELECT version, spec::text, origin, \(SQLText.iso("created_at")), \(SQLText.iso("updated_at")), owner
            FROM dataset_specs WHERE name = \(name)
            """)
        guard let row = rows.first else { return nil }
        let (version, text, origin, created, updated, owner) = try row.decode((Int, String, String, String, String, String?).self)
        return StoredDataset(spec: try decodeSpec(text, name: name), version: version, origin: origin, createdAt: created, updatedAt: updated,
                             owner: owner)
    }

    static func decodeSpec(_ text: String, name: String) throws -> DatasetSpec {
        guard let json = try? JSONParser().parse(Array(text.utf8)) else {
            throw FunctionError.permanent("dataset_unreadable", "the stored spec of a dataset is not JSON")
        }
        return try DatasetSpec(json: json, name: name)
    }

    // MARK: - Writing

    /// Records `spec` and makes its table: a new dataset gets its table (and schema) created; an
    /// existing one is changed as ``DatasetSpec/changes(from:migration:)`` allows, in the same
    /// transaction as its new version. Registering the spec a dataset has already changes
    /// nothing. Serialised by an advisory lock, so two replicas cannot race on one table.
    ///
    /// A new dataset may not load into a table another dataset loads into, nor (unless it comes
    /// from a file, whose tables the migrations may have made) into a table that exists outside
    /// the catalog; and the catalog holds at most `maxDatasets`.
    /// - Parameters:
    ///   - createOnly: refuse (`dataset_exists`) rather than change an existing dataset: the
    ///     API's creation, and a first upload racing another (one creates, the other uses it).
    ///   - owner: the creator's key (``Caller/ownerKey``), kept with a new dataset.
    /// - Throws: ``DatasetError`` for a refused change; ``PostgresError``.
    @discardableResult
    public func register(_ spec: DatasetSpec, origin: String, migration: Bool = false, createOnly: Bool = false,
                         owner: String? = nil, maxDatasets: Int? = nil) async throws -> Registration {
        let registration = try await pool.withTransaction { connection -> Registration in
            try connection.query("SELECT pg_advisory_xact_lock(hashtext('sluice.datasets'))")
            if let existing = try Self.read(spec.name, on: connection) {
                if createOnly { throw DatasetError(.exists, key: "name", "the dataset '\(spec.name)' exists already") }
                var next = spec
                next.detected = existing.spec.detected && spec.detected
                let changes = try next.changes(from: existing.spec, migration: migration)
                if changes.isEmpty && next == existing.spec {
                    try Self.reconcile(next, on: connection)
                    return Registration(stored: existing, created: false, changes: [])
                }
                for change in changes { try Self.apply(change, to: next, on: connection) }
                try Self.reconcile(next, on: connection)
                try connection.query("""
                    UPDATE dataset_specs SET spec = \(next.json.serializedString)::jsonb, version = version + 1, updated_at = now()
                    WHERE name = \(next.name)
                    """)
                return Registration(stored: try Self.read(next.name, on: connection)!, created: false, changes: changes)
            }
            let others = try Self.readAll(on: connection)
            if let maxDatasets, others.count >= maxDatasets {
                throw DatasetError(.limitReached, key: "name", "the catalog holds \(others.count) datasets, as many as it may (\(maxDatasets))")
            }
            if let other = others.first(where: { $0.table == spec.table }) {
                throw DatasetError(.invalid, key: "table", "\(spec.table) is the table of the dataset \(other.name)")
            }
            if origin != "file" {
                let existing = try connection.query("SELECT to_regclass(\(Self.identifierText(spec.table.schema) + "." + Self.identifierText(spec.table.name))) IS NOT NULL")
                if try existing.scalar(Bool.self) == true {
                    throw DatasetError(.invalid, key: "table", "\(spec.table) exists already and is not a dataset's table")
                }
            }
            try Self.createTable(spec, on: connection)
            try Self.reconcile(spec, on: connection)
            try connection.query("""
                INSERT INTO dataset_specs (name, version, spec, origin, owner)
                VALUES (\(spec.name), 1, \(spec.json.serializedString)::jsonb, \(origin), \(owner))
                """)
            return Registration(stored: try Self.read(spec.name, on: connection)!, created: true, changes: [])
        }
        cache.withLock { $0[spec.name] = Entry(stored: registration.stored, readAt: .now) }
        return registration
    }

    /// Registers every dataset declared in `directory` (`*.yaml`), as ``register(_:origin:migration:createOnly:)``.
    /// - Parameter functions: the manifests a chain's functions are looked for in: one missing
    ///   is logged (a process set of other functions may share the folder of datasets; a chunk
    ///   routed to it is dead-lettered as `unknown_function`), where the API refuses it.
    public func registerFiles(in directory: String, functions: ManifestLoader? = nil, logger: Logger) async throws {
        let router = functions.map { DatasetRouter(datasets: self, manifests: $0) }
        for spec in try DatasetFiles.load(directory: directory) {
            do {
                try router?.check(spec, fromFile: true)
            } catch {
                logger.warning("a dataset's chain names a function without a manifest here", metadata: [
                    "dataset": .string(spec.name), "key": .string(error.key), "error": .string(error.message),
                ])
            }
            let registration = try await register(spec, origin: "file")
            if registration.created || !registration.changes.isEmpty {
                logger.info("dataset registered", metadata: [
                    "dataset": .string(spec.name), "version": .stringConvertible(registration.stored.version),
                    "changes": .stringConvertible(registration.changes.count),
                ])
            }
        }
    }

    // MARK: - DDL

    static func table(_ spec: DatasetSpec) -> PostgresQuery {
        "\(identifier: spec.table.schema).\(identifier: spec.table.name)"
    }

    static func sqlType(_ type: DatasetSpec.FieldType) -> PostgresQuery {
        switch type {
        case .string: "text"
        case .integer: "bigint"
        case .number: "double precision"
        case .boolean: "boolean"
        case .timestamp: "timestamptz"
        case .object, .array, .json: "jsonb"
        }
    }

    /// An index's name: PostgreSQL's 63 bytes would cut `table_column_column…`, so it is a
    /// digest of the table and the columns.
    static func indexName(_ spec: DatasetSpec, _ columns: [String]) -> String {
        "ix_" + String(SHA256.hex(Array(([spec.table.schema, spec.table.name] + columns).joined(separator: "\u{1F}").utf8)).prefix(24))
    }

    static func createTable(_ spec: DatasetSpec, on connection: PostgresConnection) throws {
        // Only when it is missing: CREATE SCHEMA checks the right to create schemas before IF NOT
        // EXISTS, and a function's own role (ingest's, ``DatabaseRoles``) has no such right.
        if try connection.query("SELECT to_regnamespace(\(identifierText(spec.table.schema))) IS NULL").scalar(Bool.self) ?? true {
            try connection.query("CREATE SCHEMA IF NOT EXISTS \(identifier: spec.table.schema)")
        }
        var definitions: [PostgresQuery] = spec.columns.map { column in
            let notNull: PostgresQuery = spec.key.contains(column.name) ? " NOT NULL" : ""
            return "\(identifier: column.name) \(sqlType(column.type))\(notNull)"
        }
        definitions.append("job_id uuid")
        definitions.append("received_at timestamptz NOT NULL")
        definitions.append("loaded_at timestamptz NOT NULL DEFAULT clock_timestamp()")
        let key = spec.key.map { (name: String) -> PostgresQuery in "\(identifier: name)" }.joined(separator: ", ")
        definitions.append("PRIMARY KEY (\(key))")
        try connection.query("CREATE TABLE IF NOT EXISTS \(table(spec)) (\(definitions.joined(separator: ", ")))")
        try createIndex(["job_id"], of: spec, on: connection)
        for index in spec.indexes { try createIndex(index, of: spec, on: connection) }
    }

    static func createIndex(_ columns: [String], of spec: DatasetSpec, on connection: PostgresConnection) throws {
        let list = columns.map { (name: String) -> PostgresQuery in "\(identifier: name)" }.joined(separator: ", ")
        try connection.query("CREATE INDEX IF NOT EXISTS \(identifier: indexName(spec, columns)) ON \(table(spec)) (\(list))")
    }

    static func apply(_ change: DatasetSpec.TableChange, to spec: DatasetSpec, on connection: PostgresConnection) throws {
        switch change {
        case .addColumn(let column):
            try connection.query("ALTER TABLE \(table(spec)) ADD COLUMN IF NOT EXISTS \(identifier: column.name) \(sqlType(column.type))")
        case .changeType(let column, let from, let to):
            // jsonb has no cast from the scalar types PostgreSQL would pick; text → jsonb reads the text as JSON.
            let using: PostgresQuery = switch (from, to) {
            case (_, .string) where [.object, .array, .json].contains(from): "\(identifier: column)::text"
            case (_, .object), (_, .array), (_, .json): "to_jsonb(\(identifier: column))"
            default: "\(identifier: column)::\(sqlType(to))"
            }
            try connection.query("ALTER TABLE \(table(spec)) ALTER COLUMN \(identifier: column) TYPE \(sqlType(to)) USING \(using)")
        case .addIndex(let columns):
            try createIndex(columns, of: spec, on: connection)
        }
    }

    /// Adds the columns `spec` has and its table lacks (a table made before the spec said so,
    /// such as `events` by the migrations), and fails when a column's type is not the spec's.
    static func reconcile(_ spec: DatasetSpec, on connection: PostgresConnection) throws {
        let rows = try connection.query("""
            SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a
            WHERE a.attrelid = to_regclass(\(identifierText(spec.table.schema) + "." + identifierText(spec.table.name)))
              AND a.attnum > 0 AND NOT a.attisdropped
            """)
        let live = Dictionary(try rows.decode((String, String).self), uniquingKeysWith: { first, _ in first })
        guard !live.isEmpty else { throw DatasetError(.invalid, key: "table", "the table \(spec.table) does not exist") }
        for column in spec.columns {
            guard let type = live[column.name] else {
                try apply(.addColumn(column), to: spec, on: connection)
                continue
            }
            guard type == formattedType(column.type) else {
                throw DatasetError(.incompatible, key: "fields", "the table's column '\(column.name)' is \(type), not \(column.type.rawValue)", column: column.name)
            }
        }
        for name in DatasetSpec.systemColumns where live[name] == nil {
            throw DatasetError(.incompatible, key: "table", "the table \(spec.table) has no column \(name)", column: name)
        }
    }

    /// The type as `format_type` names it: ``sqlType(_:)``'s, spelled out.
    static func formattedType(_ type: DatasetSpec.FieldType) -> String {
        switch type {
        case .timestamp: "timestamp with time zone"
        default: sqlType(type).sql
        }
    }

    /// `name` as a quoted identifier, in text (for `to_regclass`, which reads a name).
    static func identifierText(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// The datasets declared in files: `DIRECTORY/NAME.yaml`, each read as ``DatasetSpec``.
public enum DatasetFiles {
    /// Every dataset in `directory`, sorted by name; an absent directory holds none.
    /// - Throws: ``ManifestError`` for YAML that cannot be read, ``DatasetError`` (with the
    ///   file named in its key) for a spec that cannot be used.
    public static func load(directory: String) throws -> [DatasetSpec] {
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: directory) else { return [] }
        return try entries.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted().map { entry in
            let file = "\(directory)/\(entry)"
            let name = String(entry.prefix(upTo: entry.lastIndex(of: ".")!))
            guard let data = fm.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw ManifestError(.unreadable, file: file, key: "", message: "cannot read the file as UTF-8")
            }
            do {
                return try DatasetSpec(json: try ManifestLoader.json(yaml: text, file: file), name: name)
            } catch let error as DatasetError {
                var named = error
                named.key = named.key.isEmpty ? file : "\(file): \(named.key)"
                throw named
            }
        }
    }
}
