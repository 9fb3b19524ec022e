import Logging
import Sluice
import SluicePostgres

/// Creates one PostgreSQL role per function and gives it exactly the privileges of its handler
/// in ``FunctionGrants`` (`sluice migrate --roles`).
///
/// Run by the role that owns the schema (the one that runs the migrations; it needs
/// `CREATEROLE`, or to be a superuser). Everything happens in one transaction under the migrations'
/// advisory lock: a role's privileges are revoked and granted again atomically, so running it again —
/// or twice at once — never leaves a function without what it needs, and a privilege removed from
/// the table is removed from the role.
///
/// Datasets' tables: `events` and every table of schema `datasets`. The role of a function whose
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
                               datasetSchema: hasDatasetSchema, datasetOwners: owners, on: connection)
            }
            if hasDatasetSchema, let owner = owners.first {
                let mine = try connection.query("""
                    SELECT tablename::text FROM pg_tables WHERE schemaname = 'datasets' AND tableowner = CURRENT_USER
                    """).decode(String.self)
                for table in mine { try connection.query("ALTER TABLE datasets.\(identifier: table) OWNER TO \(identifier: owner)") }
            }
            try connection.query("DROP FUNCTION pg_temp.sluice_set_login(text, text)")
            try connection.query("DROP FUNCTION pg_temp.sluice_grant_execute(oid, text)")
            return created
        }
        for name in created { logger.info("database role created", metadata: ["role": .string(name)]) }
        return created
    }

    /// Session functions for what cannot take bound parameters: a role's login and password (a
    /// password cannot be a parameter of `ALTER ROLE`, so the server quotes it with `format('%L')`
    /// and no statement Sluice sends holds it) and `GRANT EXECUTE` on a function.
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
            CREATE OR REPLACE FUNCTION pg_temp.sluice_grant_execute(function oid, role_name text) RETURNS void
            LANGUAGE plpgsql AS $$
            BEGIN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', function::regprocedure, role_name);
            END $$
            """)
    }

    /// Revokes what `role` holds on the schema's tables and grants `grants`.
    static func grant(_ grants: FunctionGrants, to role: String, database: String, tables existing: Set<String>,
                      datasetSchema: Bool, datasetOwners: [String], on connection: PostgresConnection) throws {
        // Table privileges revoke their column privileges too.
        try connection.query("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \(identifier: role)")
        try connection.query("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM \(identifier: role)")
        try connection.query("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM \(identifier: role)")
        for function in grants.functions {
            // A fixed signature from ``FunctionGrants``, read by the server as a name.
            let name = try connection.query("SELECT to_regprocedure(\("public." + function))::oid::text").scalar(String.self)
            guard let name else { throw Failure(code: .missingTable, message: "the function '\(function)' does not exist: run the migrations first") }
            try connection.query("SELECT pg_temp.sluice_grant_execute(\(name)::oid, \(role))")
        }
        try connection.query("GRANT CONNECT, TEMPORARY ON DATABASE \(identifier: database) TO \(identifier: role)")
        try connection.query("GRANT USAGE ON SCHEMA public TO \(identifier: role)")
        var tables = grants.tables
        if !grants.datasets.isEmpty { tables.append(.init("events", grants.datasets)) }
        for table in tables {
            guard existing.contains(table.name) else {
                throw Failure(code: .missingTable, message: "the table '\(table.name)' does not exist: run the migrations first")
            }
            let privileges = table.privileges.sorted().map { PostgresQuery(stringLiteral: $0.rawValue) }
            for privilege in privileges {
                if let columns = table.columns {
                    let list = columns.map { (name: String) -> PostgresQuery in "\(identifier: name)" }.joined(separator: ", ")
                    try connection.query("GRANT \(privilege) (\(list)) ON TABLE public.\(identifier: table.name) TO \(identifier: role)")
                } else {
                    try connection.query("GRANT \(privilege) ON TABLE public.\(identifier: table.name) TO \(identifier: role)")
                }
            }
            if table.privileges.contains(.insert) {
                // The sequences of its serial columns.
                let sequences = try connection.query("""
                    SELECT s.relname::text FROM pg_class s
                    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')
                    WHERE s.relkind = 'S' AND d.refobjid = to_regclass(\("public." + table.name))
                    """).decode(String.self)
                for sequence in sequences {
                    try connection.query("GRANT USAGE ON SEQUENCE public.\(identifier: sequence) TO \(identifier: role)")
                }
            }
        }
        guard datasetSchema else { return }
        try connection.query("REVOKE ALL ON ALL TABLES IN SCHEMA datasets FROM \(identifier: role)")
        try connection.query("REVOKE ALL ON SCHEMA datasets FROM \(identifier: role)")
        let granters: [PostgresQuery] = ["CURRENT_USER"] + datasetOwners.map { "\(identifier: $0)" }
        for granter in granters where granter != "\(identifier: role)" {
            try connection.query("ALTER DEFAULT PRIVILEGES FOR ROLE \(granter) IN SCHEMA datasets REVOKE ALL ON TABLES FROM \(identifier: role)")
        }
        if grants.ownsDatasetTables {
            try connection.query("GRANT USAGE, CREATE ON SCHEMA datasets TO \(identifier: role)")
        }
        guard !grants.datasets.isEmpty else { return }
        if !grants.ownsDatasetTables { try connection.query("GRANT USAGE ON SCHEMA datasets TO \(identifier: role)") }
        let privileges = grants.datasets.sorted().map { PostgresQuery(stringLiteral: $0.rawValue) }.joined(separator: ", ")
        try connection.query("GRANT \(privileges) ON ALL TABLES IN SCHEMA datasets TO \(identifier: role)")
        for granter in granters where granter != "\(identifier: role)" {
            try connection.query("ALTER DEFAULT PRIVILEGES FOR ROLE \(granter) IN SCHEMA datasets GRANT \(privileges) ON TABLES TO \(identifier: role)")
        }
    }
}
