import Logging

/// Applies ``Migration``s under a PostgreSQL advisory lock, so that several processes
/// starting together are safe: one applies, the others wait and then find nothing to do.
public struct Migrator: Sendable {
    /// The advisory lock key (`'sluice'` as an integer). Whatever else changes the schema's
    /// catalog (the roles' privileges) takes it too, so the two never race.
    public static let lockKey: Int64 = 7308044066418992485

    let pool: PostgresPool
    let migrations: [Migration]
    let logger: Logger

    /// - Parameter migrations: every owner's migrations. Parts of one version (a change that
    ///   touched tables of several owners) run together, in one transaction, in the order given.
    public init(pool: PostgresPool, migrations: [Migration], logger: Logger) {
        self.pool = pool
        var merged: [Int: Migration] = [:]
        for migration in migrations {
            if var part = merged[migration.version] {
                part.sql += "\n" + migration.sql
                merged[migration.version] = part
            } else {
                merged[migration.version] = migration
            }
        }
        self.migrations = merged.values.sorted { $0.version < $1.version }
        self.logger = logger
    }

    /// Applies the missing migrations and answers the versions it applied (empty when the
    /// schema was current).
    /// - Throws: ``PostgresError``; a failed migration is rolled back with its ledger row.
    @discardableResult
    public func migrate() async throws -> [Int] {
        let migrations = self.migrations
        // Nothing to do is found without the lock or any DDL: a function's own role (which may
        // read the ledger and create nothing) starts against a current schema.
        if try await isComplete() { return [] }
        let applied: [Int] = try await pool.withConnection { connection in
            // The lock comes first: even CREATE TABLE IF NOT EXISTS races on the catalog.
            try connection.query("SELECT pg_advisory_lock(\(Self.lockKey)::bigint)")
            defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(Self.lockKey)::bigint)") }
            try connection.executeUnparameterized("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            let done = Set(try connection.query("SELECT version FROM schema_migrations").decode(Int.self))
            var newlyApplied: [Int] = []
            for migration in migrations where !done.contains(migration.version) {
                try connection.executeUnparameterized("BEGIN")
                do {
                    try connection.executeScript(migration.sql)
                    try connection.query("INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))")
                    try connection.executeUnparameterized("COMMIT")
                } catch {
                    try? connection.executeUnparameterized("ROLLBACK")
                    throw error
                }
                newlyApplied.append(migration.version)
            }
            return newlyApplied
        }
        for version in applied { logger.info("migration applied", metadata: ["version": .stringConvertible(version)]) }
        return applied
    }

    /// Whether every migration of this build is in the ledger (false when there is no ledger).
    func isComplete() async throws -> Bool {
        let versions = migrations.map(\.version)
        guard try await pool.query("SELECT to_regclass('schema_migrations') IS NOT NULL").scalar(Bool.self) == true else { return false }
        let rows = try await pool.query("SELECT count(*) FROM schema_migrations WHERE version = ANY(\(versions)::integer[])")
        return try rows.scalar(Int.self) ?? 0 == versions.count
    }

    /// Whether every migration of this build is applied.
    public func isCurrent() async throws -> Bool {
        let latest = migrations.last?.version ?? 0
        let rows = try await pool.query("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return try rows.scalar(Int.self) ?? 0 >= latest
    }
}
