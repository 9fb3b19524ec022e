import Logging
import Sluice
import SluicePostgres

/// Creates one PostgreSQL role per function and gives it exactly the privileges of its handler
/// in ``FunctionGrants`` (`sluice migrate --roles`).
///
/// Run by the role that owns the schema (the one that runs the migrations; it needs
/// `CREATEROLE`, or to be a superuser). Everything happens in one transaction under the migrations'
/// advisory lock, and changes only what differs (extras revoked, what is missing granted), so
/// running it again — or twice at once — never leaves a function without what it needs, and a
/// privilege removed from the table is removed from the role.
///
/// Datasets' tables: `events`, every table of schema `datasets` and every table the catalog names
/// (a dataset declared in a file may name `schema.table`). The role of a function whose
/// handler creates them at run time (ingest) owns them and may create tables in `datasets`; the
/// other roles reach them, present and future, through default privileges.
public struct DatabaseRoles: Sendable {
    /// One function's role.
    public struct Role: Sendable, Equatable {
        /// The function's name (its manifest's `name`).
        public var function: String
        /// Its handler, which decides its grants.
        public var handler: String
        /// Its login password: given, the role may log in with it; nil, a new role is `NOLOGIN`
        /// (grant it to a login role of yours) and an existing one keeps its login as it is.
        public var password: String?

        public init(function: String, handler: String, password: String? = nil) {
            self.function = function
            self.handler = handler
            self.password = password
        }

        /// The role's name: `sluice_` and the function's name.
        public var name: String { DatabaseRoles.roleName(for: function) }
    }

    /// Why the roles could not be applied.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// Stable codes, as `code` reads.
        public enum Code: String, Sendable {
            /// A role name PostgreSQL cannot hold (over 63 bytes).
            case invalidName = "role_invalid_name"
            /// A table the grants name does not exist: the schema is older than this build.
            case missingTable = "role_missing_table"
        }

        /// What went wrong.
        public var code: Code
        /// Which role, table or function; never a password.
        public var message: String

        /// The code and the message.
        public var description: String { "\(code.rawValue): \(message)" }
    }


    /// The role name of function `function` (``Manifest/databaseRole(for:)``).
    public static func roleName(for function: String) -> String { Manifest.databaseRole(for: function) }

    let pool: PostgresPool
    let logger: Logger

    /// - Parameter pool: connections as the schema's owner.
    public init(pool: PostgresPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Creates the roles that are missing and sets every role's privileges to its grants.
    /// - Returns: the names of the roles created by this call.
    /// - Throws: ``Failure``; ``PostgresError`` (`42501` when the caller may not create roles).
    @discardableResult
    public func apply(_ roles: [Role]) async throws -> [String] {
        for role in roles where role.name.utf8.count > 63 {
            throw Failure(code: .invalidName, message: "the role name for function '\(role.function)' is longer than 63 bytes")
        }
        let created: [String] = try await pool.withTransaction { connection in
            // The migrations' lock: runs of this, and migrations, one at a time.
            try connection.query("SELECT pg_advisory_xact_lock(\(Migrator.lockKey)::bigint)")
            let database = try connection.query("SELECT current_database()").scalar(String.self) ?? ""
            let existingTables = Set(try connection.query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'").decode(String.self))
            let hasDatasetSchema = try connection.query("SELECT to_regnamespace('datasets') IS NOT NULL").scalar(Bool.self) ?? false
            let catalog = try DatasetStore.readAll(on: connection).map { [$0.table.schema, $0.table.name] }
            try Self.defineSetLogin(on: connection)
            var created: [String] = []
            for role in roles {
                let exists = try connection.query("SELECT count(*) FROM pg_roles WHERE rolname = \(role.name)").scalar(Int.self) ?? 0 > 0
                if !exists {
                    try connection.query("CREATE ROLE \(identifier: role.name) NOLOGIN")
                    created.append(role.name)
                }
                if let password = role.password {
                    try connection.query("SELECT pg_temp.sluice_set_login(\(role.name), \(password))")
                }
            }
            let owners = roles.filter { FunctionGrants.forHandler($0.handler).ownsDatasetTables }.map(\.name)
            // The schema's owner acts for the roles that own datasets' tables: it sets their
            // default privileges and hands them the tables it creates.
            for owner in owners { try connection.query("GRANT \(identifier: owner) TO CURRENT_USER") }
            for role in roles {
                try Self.grant(FunctionGrants.forHandler(role.handler), to: role.name, database: database, tables: existingTables,
                               datasetSchema: hasDatasetSchema, catalog: catalog, datasetOwners: owners, on: connection)
            }
            if hasDatasetSchema, let owner = owners.first {
                let mine = try connection.query("""
                    SELECT tablename::text FROM pg_tables WHERE schemaname = 'datasets' AND tableowner = CURRENT_USER
                    """).decode(String.self)
                for table in mine { try connection.query("ALTER TABLE datasets.\(identifier: table) OWNER TO \(identifier: owner)") }
            }
            try connection.query("DROP FUNCTION pg_temp.sluice_set_login(text, text)")
            try connection.query("DROP FUNCTION pg_temp.sluice_execute(oid, text, boolean)")
            return created
        }
        for name in created { logger.info("database role created", metadata: ["role": .string(name)]) }
        return created
    }

    /// Session functions for what cannot take bound parameters: a role's login and password (a
    /// password cannot be a parameter of `ALTER ROLE`, so the server quotes it with `format('%L')`
    /// and no statement Sluice sends holds it) and `GRANT` / `REVOKE EXECUTE` on a function.
    static func defineSetLogin(on connection: PostgresConnection) throws {
        try connection.query("""
            CREATE OR REPLACE FUNCTION pg_temp.sluice_set_login(role_name text, secret text) RETURNS void
            LANGUAGE plpgsql AS $$
            BEGIN
                EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', role_name, secret);
            END $$
            """)
        // A function's signature is not an identifier: the server writes it from the oid.
        try connection.query("""
            CREATE OR REPLACE FUNCTION pg_temp.sluice_execute(function oid, role_name text, allow boolean) RETURNS void
            LANGUAGE plpgsql AS $$
            BEGIN
                IF allow THEN
                    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', function::regprocedure, role_name);
                ELSE
                    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %I', function::regprocedure, role_name);
                END IF;
            END $$
            """)
    }

    /// One privilege a role holds on a relation (on one of its columns when `column` is set).
    struct Held: Hashable {
        var schema: String
        var relation: String
        var column: String?
        var privilege: String
    }

    /// The privileges `role` was granted by name (not through PUBLIC) on the relations of
    /// `schemas` it does not own, table-level and column-level.
    static func held(by role: String, in schemas: [String], on connection: PostgresConnection) throws -> Set<Held> {
        let relations = try connection.query("""
            SELECT n.nspname::text, c.relname::text, a.privilege_type
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace CROSS JOIN LATERAL aclexplode(c.relacl) a
            WHERE n.nspname = ANY(\(schemas)::text[]) AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = \(role))
              AND c.relowner <> a.grantee
            """).decode((String, String, String).self)
        let columns = try connection.query("""
            SELECT n.nspname::text, c.relname::text, att.attname::text, a.privilege_type
            FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            CROSS JOIN LATERAL aclexplode(att.attacl) a
            WHERE n.nspname = ANY(\(schemas)::text[]) AND NOT att.attisdropped
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = \(role)) AND c.relowner <> a.grantee
            """).decode((String, String, String, String).self)
        return Set(relations.map { Held(schema: $0.0, relation: $0.1, column: nil, privilege: $0.2) }
                   + columns.map { Held(schema: $0.0, relation: $0.1, column: $0.2, privilege: $0.3) })
    }

    /// The privilege keywords a statement may name: those PostgreSQL reports for tables and
    /// sequences. Anything else is revoked as `ALL`.
    static let keywords: [String: PostgresQuery] = [
        "SELECT": "SELECT", "INSERT": "INSERT", "UPDATE": "UPDATE", "DELETE": "DELETE", "TRUNCATE": "TRUNCATE",
        "REFERENCES": "REFERENCES", "TRIGGER": "TRIGGER", "USAGE": "USAGE",
    ]

    /// `GRANT` (or `REVOKE`) of one held privilege.
    static func statement(_ grant: Bool, _ item: Held, kind: String, role: String) -> PostgresQuery {
        let privilege = keywords[item.privilege] ?? "ALL"
        let columns: PostgresQuery = item.column.map { " (\(identifier: $0))" } ?? ""
        let object: PostgresQuery = kind == "S" ? "SEQUENCE" : "TABLE"
        return grant
            ? "GRANT \(privilege)\(columns) ON \(object) \(identifier: item.schema).\(identifier: item.relation) TO \(identifier: role)"
            : "REVOKE \(privilege)\(columns) ON \(object) \(identifier: item.schema).\(identifier: item.relation) FROM \(identifier: role)"
    }

    /// Sets what `role` holds to `grants`, changing only what differs: a run that finds every
    /// privilege in place touches no table's catalog row (so it cannot collide with other DDL).
    static func grant(_ grants: FunctionGrants, to role: String, database: String, tables existing: Set<String>,
                      datasetSchema: Bool, catalog: [[String]], datasetOwners: [String], on connection: PostgresConnection) throws {
        let schemas = Array(Set(["public", "datasets"] + catalog.map { $0[0] })).sorted()
        // What the role should hold on relations: tables, their columns, the sequences of the
        // tables it inserts into, and every dataset's table (events and schema datasets).
        var wanted = Set<Held>()
        var tables = grants.tables
        if !grants.datasets.isEmpty { tables.append(.init("events", grants.datasets)) }
        for table in tables {
            guard existing.contains(table.name) else {
                throw Failure(code: .missingTable, message: "the table '\(table.name)' does not exist: run the migrations first")
            }
            for privilege in table.privileges {
                if let columns = table.columns {
                    for column in columns { wanted.insert(Held(schema: "public", relation: table.name, column: column, privilege: privilege.rawValue)) }
                } else {
                    wanted.insert(Held(schema: "public", relation: table.name, column: nil, privilege: privilege.rawValue))
                }
            }
            if table.privileges.contains(.insert) {
                let sequences = try connection.query("""
                    SELECT s.relname::text FROM pg_class s
                    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')
                    WHERE s.relkind = 'S' AND d.refobjid = to_regclass(\("public." + table.name))
                    """).decode(String.self)
                for sequence in sequences { wanted.insert(Held(schema: "public", relation: sequence, column: nil, privilege: "USAGE")) }
            }
        }
        if !grants.datasets.isEmpty {
            let named = Set(catalog)
            let candidates = try connection.query("""
                SELECT schemaname::text, tablename::text FROM pg_tables WHERE schemaname = ANY(\(schemas)::text[]) AND tableowner <> \(role)
                """).decode((String, String).self)
            for (schema, table) in candidates where schema == "datasets" || named.contains([schema, table]) {
                for privilege in grants.datasets { wanted.insert(Held(schema: schema, relation: table, column: nil, privilege: privilege.rawValue)) }
            }
            // The schemas of tables a file named elsewhere.
            for schema in Set(catalog.map { $0[0] }).subtracting(["public", "datasets"]).sorted() {
                let quoted = DatasetStore.identifierText(schema)
                guard try connection.query("SELECT to_regnamespace(\(quoted)) IS NOT NULL").scalar(Bool.self) == true else { continue }
                if try connection.query("SELECT has_schema_privilege(\(role), \(schema), 'USAGE')").scalar(Bool.self) != true {
                    try connection.query("GRANT USAGE ON SCHEMA \(identifier: schema) TO \(identifier: role)")
                }
            }
        }
        let kinds = Dictionary(try connection.query("""
            SELECT n.nspname::text || '.' || c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY(\(schemas)::text[])
            """).decode((String, String).self), uniquingKeysWith: { first, _ in first })
        func kind(_ item: Held) -> String { kinds["\(item.schema).\(item.relation)"] ?? "r" }
        // Revoke what it should not hold (a table-level revoke also takes that privilege's column
        // grants, so read again before granting).
        for item in try held(by: role, in: schemas, on: connection).subtracting(wanted).sorted(by: { "\($0)" < "\($1)" }) {
            try connection.query(statement(false, item, kind: kind(item), role: role))
        }
        for item in wanted.subtracting(try held(by: role, in: schemas, on: connection)).sorted(by: { "\($0)" < "\($1)" }) {
            try connection.query(statement(true, item, kind: kind(item), role: role))
        }
        // Functions, by their oids.
        let wantedFunctions = Set(try grants.functions.map { function -> String in
            guard let oid = try connection.query("SELECT to_regprocedure(\("public." + function))::oid::text").scalar(String?.self) ?? nil else {
                throw Failure(code: .missingTable, message: "the function '\(function)' does not exist: run the migrations first")
            }
            return oid
        })
        let heldFunctions = Set(try connection.query("""
            SELECT p.oid::text FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
            WHERE p.pronamespace = 'public'::regnamespace AND a.privilege_type = 'EXECUTE'
              AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = \(role)) AND p.proowner <> a.grantee
            """).decode(String.self))
        for oid in heldFunctions.subtracting(wantedFunctions).sorted() {
            try connection.query("SELECT pg_temp.sluice_execute(\(oid)::oid, \(role), false)")
        }
        for oid in wantedFunctions.subtracting(heldFunctions).sorted() {
            try connection.query("SELECT pg_temp.sluice_execute(\(oid)::oid, \(role), true)")
        }
        // The database and the schemas, when missing.
        if try connection.query("SELECT has_database_privilege(\(role), current_database(), 'CONNECT') AND has_database_privilege(\(role), current_database(), 'TEMPORARY')").scalar(Bool.self) != true {
            try connection.query("GRANT CONNECT, TEMPORARY ON DATABASE \(identifier: database) TO \(identifier: role)")
        }
        if try connection.query("SELECT has_schema_privilege(\(role), 'public', 'USAGE')").scalar(Bool.self) != true {
            try connection.query("GRANT USAGE ON SCHEMA public TO \(identifier: role)")
        }
        guard datasetSchema else { return }
        let usage = grants.ownsDatasetTables || !grants.datasets.isEmpty
        let create = grants.ownsDatasetTables
        let hasUsage = try connection.query("SELECT has_schema_privilege(\(role), 'datasets', 'USAGE')").scalar(Bool.self) == true
        let hasCreate = try connection.query("SELECT has_schema_privilege(\(role), 'datasets', 'CREATE')").scalar(Bool.self) == true
        if hasCreate && !create { try connection.query("REVOKE CREATE ON SCHEMA datasets FROM \(identifier: role)") }
        if hasUsage && !usage { try connection.query("REVOKE USAGE ON SCHEMA datasets FROM \(identifier: role)") }
        if create && !hasCreate { try connection.query("GRANT CREATE ON SCHEMA datasets TO \(identifier: role)") }
        if usage && !hasUsage { try connection.query("GRANT USAGE ON SCHEMA datasets TO \(identifier: role)") }
        // Tables made later: default privileges of whoever creates them (pg_default_acl only).
        let granters: [PostgresQuery] = ["CURRENT_USER"] + datasetOwners.map { "\(identifier: $0)" }
        let privileges = grants.datasets.sorted().map { PostgresQuery(stringLiteral: $0.rawValue) }.joined(separator: ", ")
        for granter in granters where granter != "\(identifier: role)" {
            try connection.query("ALTER DEFAULT PRIVILEGES FOR ROLE \(granter) IN SCHEMA datasets REVOKE ALL ON TABLES FROM \(identifier: role)")
            if !grants.datasets.isEmpty {
                try connection.query("ALTER DEFAULT PRIVILEGES FOR ROLE \(granter) IN SCHEMA datasets GRANT \(privileges) ON TABLES TO \(identifier: role)")
            }
        }
    }
}
