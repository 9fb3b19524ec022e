/// What each built-in function's PostgreSQL role may do: the one table of grants, read from the
/// SQL each function runs (its own statements, the owners it calls — ``JobStore``,
/// ``AuditLog``, ``ErasureFence``, ``ConsentBook``, ``DatasetStore`` — and the triggers its
/// writes fire). ``DatabaseRoles`` applies it; `FunctionGrantsTests` keeps it honest.
///
/// A function whose handler is not here (one in another language, a test function) gets
/// ``minimal``: it may connect and read the migration ledger, nothing else.
public struct FunctionGrants: Sendable, Equatable {
    /// A table privilege.
    public enum Privilege: String, Sendable, Hashable, CaseIterable, Comparable {
        case select = "SELECT", insert = "INSERT", update = "UPDATE", delete = "DELETE"

        public static func < (lhs: Privilege, rhs: Privilege) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    /// Privileges on one table of schema `public`, on some of its columns when `columns` is set.
    public struct Table: Sendable, Equatable {
        public var name: String
        public var privileges: Set<Privilege>
        /// The columns the privileges are limited to; nil for the whole table.
        public var columns: [String]?

        public init(_ name: String, _ privileges: Set<Privilege>, columns: [String]? = nil) {
            self.name = name
            self.privileges = privileges
            self.columns = columns
        }
    }

    /// Privileges on the tables of schema `public`.
    public var tables: [Table]
    /// Privileges on every dataset's table: `events` and every table of schema `datasets`,
    /// including those the API creates later (default privileges).
    public var datasets: Set<Privilege>
    /// Whether the role creates and alters datasets' tables (`POST /api/v1/datasets`, a detected
    /// upload): it owns the tables of schema `datasets` and may create tables there.
    public var ownsDatasetTables: Bool
    /// The functions of schema `public` it may call, with their argument types
    /// (`job_status_for_loading(uuid)`).
    public var functions: [String]

    public init(tables: [Table] = [], datasets: Set<Privilege> = [], ownsDatasetTables: Bool = false, functions: [String] = []) {
        self.tables = tables
        self.datasets = datasets
        self.ownsDatasetTables = ownsDatasetTables
        self.functions = functions
    }

    /// What every role may read: the migration ledger (readiness asks whether the schema is current).
    public static let ledger = Table("schema_migrations", [.select])
    /// The catalog of datasets: every stage reads the spec a chunk names.
    static let catalog = Table("dataset_specs", [.select])
    /// What the consent middleware reads (``ConsentBook``).
    static let consentBook = Table("consents", [.select], columns: ["subject", "purpose", "granted", "updated_at"])
    /// What ``ErasureFence/condition(received:)`` reads: a grant recorded after an erasure.
    static let fence = [Table("erasures", [.select]), Table("consents", [.select], columns: ["subject", "granted", "updated_at"])]
    /// What ``AuditLog`` writes: rows, answering their ids (`RETURNING id`), never reading the log.
    static let auditWriter = [Table("audit_log", [.insert]), Table("audit_log", [.select], columns: ["id"])]
    /// The lookups enrich joins.
    static let lookups = [Table("lookup_countries", [.select]), Table("lookup_device_classes", [.select])]
    /// A write to `events` fires the rollup triggers, which run as the writer and queue a delta.
    static let rollupDelta = Table("events_rollup_delta", [.insert])

    /// A function that may connect and read the ledger, nothing else (the gateway; a function
    /// whose handler is not a built-in one).
    public static let minimal = FunctionGrants(tables: [ledger])

    /// The grants of every built-in handler.
    public static let byHandler: [String: FunctionGrants] = [
        "gateway": minimal,
        // Redis alone (first-seen marks); the consent middleware reads consents.
        "validate": FunctionGrants(tables: [ledger, catalog, consentBook]),
        "enrich": FunctionGrants(tables: [ledger, catalog] + lookups),
        "transform": FunctionGrants(tables: [ledger, catalog]),
        // COPY into a temporary table, insert into the dataset's table, its ledger row; the job's
        // status under a share lock (cancelled or failed jobs are not loaded, their rows deleted),
        // through the owner's function; the erasure fence.
        "load": FunctionGrants(
            tables: [ledger, catalog, Table("jobs", [.select], columns: ["id", "status", "dataset"]),
                     Table("load_ledger", [.select, .insert]), rollupDelta] + fence,
            datasets: [.select, .insert], functions: ["job_status_for_loading(uuid)"]),
        // The end of a job.
        "job-recorder": FunctionGrants(tables: [ledger, catalog, Table("jobs", [.select, .update])]),
        // Its inserts name their conflict target, which needs reading those columns.
        "quarantine": FunctionGrants(tables: [ledger, catalog, Table("quarantine", [.insert]),
                                              Table("quarantine", [.select], columns: ["stream", "entry_id", "position"])] + fence),
        "notify": FunctionGrants(tables: [ledger, catalog, Table("deliveries", [.select, .insert, .update]),
                                          Table("jobs", [.select], columns: ["id", "callback_url"])]),
        // Jobs, the datasets (catalog and tables), a failed job's rows, the reason of a
        // quarantined event; its dry run builds validate and enrich.
        "ingest": FunctionGrants(
            tables: [ledger, Table("dataset_specs", [.select, .insert, .update]), Table("jobs", [.select, .insert, .update]),
                     Table("quarantine", [.select], columns: ["job_id", "reason"]), rollupDelta, consentBook]
                + lookups + auditWriter,
            datasets: [.select, .delete], ownsDatasetTables: true),
        // Records by key, summaries from the rollups, which it keeps current.
        "warehouse": FunctionGrants(
            tables: [ledger, catalog, Table("events_rollup", [.select, .insert, .delete]),
                     Table("events_rollup_delta", [.select, .insert, .delete])] + auditWriter,
            datasets: [.select, .update, .delete]),
        // Async calls; it runs validate (consents).
        "calls": FunctionGrants(tables: [ledger, catalog, Table("async_calls", [.select, .insert, .update]), consentBook] + auditWriter),
        // Consents, erasure everywhere a subject is stored, the audit log.
        "privacy": FunctionGrants(
            tables: [ledger, catalog, Table("consents", [.select, .insert, .update]), Table("audit_log", [.select, .insert]),
                     Table("erasures", [.select, .insert, .update]), Table("quarantine", [.select, .delete]),
                     Table("async_calls", [.select, .update, .delete]), rollupDelta],
            datasets: [.select, .delete]),
    ]

    /// The grants of a function with handler `handler`.
    public static func forHandler(_ handler: String) -> FunctionGrants {
        byHandler[handler] ?? minimal
    }

    /// The privileges on table `name` (on all its columns when `column` is nil, else on that
    /// column), as the table grants them; `events` adds ``datasets``.
    public func privileges(on name: String, column: String? = nil) -> Set<Privilege> {
        var result: Set<Privilege> = name == "events" ? datasets : []
        for table in tables where table.name == name {
            if table.columns == nil || (column.map { table.columns!.contains($0) } ?? false) { result.formUnion(table.privileges) }
        }
        return result
    }
}
