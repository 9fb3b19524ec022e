import Foundation
import Logging
import NIOPosix
import Sluice
@testable import SluiceFunctions
import SluicePostgres
import Testing

/// One PostgreSQL role per function (`sluice migrate --roles`), in a real PostgreSQL: each role
/// holds exactly its handler's grants, is refused the rest, and runs its function.
@Suite("Database roles per function", .serialized)
struct DatabaseRolesIntegrationTests {
    static let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")

    /// The owner's URL with `user` (and a password) in place of the owner.
    static func url(_ ownerURL: String, user: String, password: String) -> String {
        var components = URLComponents(string: ownerURL)!
        components.user = user
        components.password = password
        return components.string!
    }

    /// The repository's functions as roles, each with a password.
    static func roles() throws -> [DatabaseRoles.Role] {
        try ManifestLoader(functionsDirectory: "\(root)/functions").loadAll().map {
            DatabaseRoles.Role(function: $0.name, handler: $0.handler, password: "pw-\($0.name)-\(UUID().uuidString)")
        }
    }

    static func refused(_ pool: PostgresPool, _ query: PostgresQuery, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            _ = try await pool.query(query)
            Issue.record("\(query.sql) was allowed", sourceLocation: sourceLocation)
        } catch let error as PostgresError {
            #expect(error.sqlState == "42501", "\(query.sql): \(error.code.rawValue) \(error.sqlState ?? "")", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(query.sql): \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func eachFunctionsRoleMayDoWhatItNeedsAndNothingElse() async throws {
        guard let ownerURL = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        let logger = Logger(label: "test")
        let threadPool = NIOThreadPool(numberOfThreads: 4)
        threadPool.start()
        let owner = PostgresPool(url: ownerURL, threadPool: threadPool, maxConnections: 2)
        try await Migrator(pool: owner, migrations: PipelineSchema.migrations, logger: logger).migrate()
        try await DatasetStore(pool: owner).registerFiles(in: "\(Self.root)/datasets", logger: logger)
        let roles = try Self.roles()
        // Twice at once, then again: idempotent and safe to run concurrently.
        async let first = DatabaseRoles(pool: PostgresPool(url: ownerURL, threadPool: threadPool, maxConnections: 1), logger: logger).apply(roles)
        async let second = DatabaseRoles(pool: PostgresPool(url: ownerURL, threadPool: threadPool, maxConnections: 1), logger: logger).apply(roles)
        _ = try await (first, second)
        #expect(try await DatabaseRoles(pool: owner, logger: logger).apply(roles).isEmpty)
        // A privilege granted by hand is taken back on the next run.
        try await owner.query("GRANT SELECT ON consents TO sluice_enrich")
        try await owner.query("GRANT UPDATE (status) ON jobs TO sluice_load")
        try await DatabaseRoles(pool: owner, logger: logger).apply(roles)
        #expect(try await owner.query("SELECT has_table_privilege('sluice_enrich', 'consents', 'SELECT')").scalar(Bool.self) == false)
        #expect(try await owner.query("SELECT has_any_column_privilege('sluice_load', 'jobs', 'UPDATE')").scalar(Bool.self) == false)
        // A run that finds every privilege in place changes no table's catalog row (so it cannot
        // collide with DDL running beside it).
        let catalogRows: PostgresQuery = """
            SELECT string_agg(xmin::text, ',' ORDER BY oid) FROM pg_class WHERE relnamespace IN ('public'::regnamespace, 'datasets'::regnamespace)
            """
        let before = try await owner.query(catalogRows).scalar
        try await DatabaseRoles(pool: owner, logger: logger).apply(roles)
        #expect(try await owner.query(catalogRows).scalar == before)
        // Each may log in with its password (stored as a SCRAM verifier, never as given).
        let logins = try await owner.query("""
            SELECT count(*) FROM pg_authid WHERE rolname = ANY(\(roles.map(\.name))::text[]) AND rolcanlogin AND rolpassword LIKE 'SCRAM-SHA-256$%'
            """)
        #expect(logins.scalar == String(roles.count))
        var pools: [String: PostgresPool] = [:]
        for role in roles {
            pools[role.function] = PostgresPool(url: Self.url(ownerURL, user: role.name, password: role.password!), threadPool: threadPool, maxConnections: 2)
        }

        // Every table of schema public, every privilege: the role has it on the whole table exactly
        // when FunctionGrants says so; column grants only on the columns it names.
        let tables = try await owner.query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").decode(String.self)
        #expect(tables.contains("consents") && tables.contains("audit_log") && tables.contains("jobs"))
        for role in roles {
            let grants = FunctionGrants.forHandler(role.handler)
            for table in tables {
                for privilege in FunctionGrants.Privilege.allCases {
                    let whole = grants.tables.contains { $0.name == table && $0.columns == nil && $0.privileges.contains(privilege) }
                        || (table == "events" && grants.datasets.contains(privilege))
                    let has = try await owner.query("""
                        SELECT has_table_privilege(\(role.name), \("public." + table), \(privilege.rawValue))
                        """).scalar(Bool.self)
                    #expect(has == whole, "\(role.name) \(privilege.rawValue) on \(table)")
                }
                for grant in grants.tables where grant.name == table {
                    for column in grant.columns ?? [] {
                        for privilege in grant.privileges {
                            #expect(try await owner.query("""
                                SELECT has_column_privilege(\(role.name), \("public." + table), \(column), \(privilege.rawValue))
                                """).scalar(Bool.self) == true, "\(role.name) \(privilege.rawValue) (\(column)) on \(table)")
                        }
                    }
                }
            }
        }

        // The walls finding 14 asked for.
        let enrich = pools["enrich"]!, load = pools["load"]!, gateway = pools["gateway"]!
        await Self.refused(enrich, "SELECT count(*) FROM consents")
        await Self.refused(enrich, "SELECT count(*) FROM audit_log")
        await Self.refused(enrich, "SELECT count(*) FROM events")
        await Self.refused(enrich, "INSERT INTO audit_log (actor, action, resource) VALUES ('x', 'y', 'z')")
        await Self.refused(load, "UPDATE jobs SET status = 'cancelled'")
        await Self.refused(load, "INSERT INTO jobs (id, status) VALUES (gen_random_uuid(), 'completed')")
        await Self.refused(load, "DELETE FROM jobs")
        await Self.refused(load, "SELECT purpose FROM consents")
        await Self.refused(load, "SELECT count(*) FROM audit_log")
        await Self.refused(gateway, "SELECT count(*) FROM jobs")
        await Self.refused(gateway, "SELECT count(*) FROM dataset_specs")
        await Self.refused(pools["validate"]!, "INSERT INTO consents (subject, purpose, granted, source) VALUES ('u', 'p', true, 'api')")
        await Self.refused(pools["ingest"]!, "SELECT actor FROM audit_log")
        await Self.refused(pools["warehouse"]!, "SELECT count(*) FROM consents")
        await Self.refused(pools["privacy"]!, "UPDATE jobs SET status = 'failed'")
        await Self.refused(pools["transform"]!, "CREATE TABLE sneaky (x int)")
        // Every role may read the ledger: readiness asks whether the schema is current.
        for (_, pool) in pools {
            #expect(try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: logger).isCurrent())
            #expect(try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: logger).migrate().isEmpty)
        }

        // What each function does, with its own role.
        // ingest: opens a job, writes an audit row.
        let job = UUID().uuidString.lowercased()
        try await pools["ingest"]!.query("INSERT INTO jobs (id, status, format) VALUES (\(job)::uuid, 'processing', 'ndjson')")
        try await AuditEntry(actor: "test", action: "roles", resource: "/api/v1/test").write(to: pools["ingest"]!)
        // load: the real function, into events (the erasure fence, the job's status, its ledger, the rollup trigger).
        let manifest = Manifest(name: "load", handler: "load", triggers: [.stream("load")])
        let invoker = FunctionInvoker(manifest: manifest, function: LoadFunction(pool: load), logger: logger)
        let prefix = "roles-\(UUID().uuidString.prefix(8))"
        let event = Event(["event_id": .string("\(prefix)-1"), "event_type": "login", "event_time": "2026-11-23T11:59:00Z", "user_id": "u-1"])
        let chunk = Chunk(id: "\(Int.random(in: 1...1_000_000_000))-0", jobID: job, events: [event], receivedAt: 1_767_225_600_123)
        #expect(try await invoker.invoke(chunk, attempt: 1) == [.forward(event)])
        #expect(try await owner.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid").scalar == "1")
        // enrich: the real function reads its lookups.
        let enrichManifest = Manifest(name: "enrich", handler: "enrich", triggers: [.stream("enrich")], outputs: ["transform"])
        let enrichFunction = try EnrichFunction(setup: .testing(enrichManifest, threadPool: threadPool, postgres: enrich))
        let enriched = try await FunctionInvoker(manifest: enrichManifest, function: enrichFunction, logger: logger)
            .invoke(Chunk(id: "1-0", events: [Event(["context": ["device_type": "desktop", "location": ["country": "JP"]]])]), attempt: 1)
        #expect(enriched == [.forward(Event(["context": ["device_type": "desktop", "location": ["country": "JP", "country_name": "Japan"],
                                                         "device_class": "computer"]]))])
        // quarantine: the real function stores a refused event, behind the erasure fence.
        let quarantineManifest = Manifest(name: "quarantine", handler: "quarantine", triggers: [.stream("quarantine")])
        let quarantine = try QuarantineFunction(setup: .testing(quarantineManifest, threadPool: threadPool, postgres: pools["quarantine"]!))
        let refusedEvent = Event(["function": "validate", "reason": "missing_field", "event": ["event_id": .string("\(prefix)-q")]])
        #expect(try await FunctionInvoker(manifest: quarantineManifest, function: quarantine, logger: logger)
            .invoke(Chunk(id: "\(Int.random(in: 1...1_000_000_000))-9", jobID: job, events: [refusedEvent]), attempt: 1) == [.forward(refusedEvent)])
        #expect(try await pools["ingest"]!.query("SELECT reason FROM quarantine WHERE job_id = \(job)::uuid").scalar == "missing_field")
        await Self.refused(pools["quarantine"]!, "SELECT raw FROM quarantine")
        // jobs: records the end; warehouse: reads and changes a record; privacy: consents and the audit log.
        try await JobStore.recordEnd(job, status: .completed, counts: "{}", error: nil, finishedAtMilliseconds: nil, pool: pools["jobs"]!)
        #expect(try await owner.query("SELECT status FROM jobs WHERE id = \(job)::uuid").scalar == "completed")
        #expect(try await pools["warehouse"]!.query("UPDATE events SET event_type = 'signup' WHERE event_id = \("\(prefix)-1") RETURNING 1").rows.count == 1)
        try await pools["privacy"]!.query("INSERT INTO consents (subject, purpose, granted, source) VALUES (\(prefix), 'analytics', false, 'api')")
        #expect(try await pools["privacy"]!.query("SELECT count(*) FROM audit_log WHERE action = 'roles'").scalar(Int.self) ?? 0 >= 1)
        #expect(try await pools["validate"]!.query("SELECT granted FROM consents WHERE subject = \(prefix)").scalar == "f")
        try await pools["notify"]!.query("SELECT callback_url FROM jobs WHERE id = \(job)::uuid")
        try await pools["calls"]!.query("SELECT count(*) FROM async_calls")
        #expect(try await pools["privacy"]!.query("DELETE FROM events WHERE event_id = \("\(prefix)-1") RETURNING 1").rows.count == 1)

        // A dataset made at run time by ingest's role: ingest owns its table, load writes it,
        // warehouse and privacy reach it, enrich does not.
        let name = "roles_\(UUID().uuidString.prefix(8).lowercased())"
        let spec = try DatasetSpec(json: ["name": .string(name), "fields": [["name": "order_id", "type": "string", "required": true]], "key": ["order_id"]])
        let registration = try await DatasetStore(pool: pools["ingest"]!).register(spec, origin: "api", createOnly: true)
        #expect(registration.created)
        let table: PostgresQuery = "datasets.\(identifier: name)"
        #expect(try await owner.query("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'datasets' AND tablename = \(name)").scalar == "sluice_ingest")
        let datasetChunk = Chunk(id: "\(Int.random(in: 1...1_000_000_000))-1", jobID: nil, events: [Event(["order_id": "o-1"])],
                                 receivedAt: 1_767_225_600_123, dataset: DatasetReference(name: name, version: 1))
        #expect(try await invoker.invoke(datasetChunk, attempt: 1) == [.forward(Event(["order_id": "o-1"]))])
        #expect(try await pools["warehouse"]!.query("SELECT count(*) FROM \(table)").scalar == "1")
        #expect(try await pools["privacy"]!.query("DELETE FROM \(table) WHERE order_id = 'o-1' RETURNING 1").rows.count == 1)
        await Self.refused(enrich, "SELECT count(*) FROM \(table)")
        await Self.refused(load, "DROP TABLE \(table)")
        // Ingest changes its table as the spec grows (a column added).
        let grown = try DatasetSpec(json: ["name": .string(name), "fields": [["name": "order_id", "type": "string", "required": true],
                                                                             ["name": "total", "type": "number"]], "key": ["order_id"]])
        #expect(try await DatasetStore(pool: pools["ingest"]!).register(grown, origin: "api").changes.count == 1)
        try await pools["load"]!.query("INSERT INTO \(table) (order_id, total, received_at) VALUES ('o-2', 1.5, now())")
        await Self.refused(pools["ingest"]!, "CREATE SCHEMA elsewhere")
        // A dataset declared in a file may name a table in a schema of its own: the next run of
        // the roles reaches it too.
        let schema = "roles_\(UUID().uuidString.prefix(8).lowercased())"
        let declared = try DatasetSpec(json: ["name": .string("\(name)_file"), "table": .string("\(schema).orders"),
                                              "fields": [["name": "order_id", "type": "string", "required": true]], "key": ["order_id"]])
        try await DatasetStore(pool: owner).register(declared, origin: "file")
        await Self.refused(load, "INSERT INTO \(identifier: schema).orders (order_id, received_at) VALUES ('o-1', now())")
        try await DatabaseRoles(pool: owner, logger: logger).apply(roles)
        try await load.query("INSERT INTO \(identifier: schema).orders (order_id, received_at) VALUES ('o-1', now())")
        #expect(try await pools["warehouse"]!.query("SELECT count(*) FROM \(identifier: schema).orders").scalar == "1")
        await Self.refused(enrich, "SELECT count(*) FROM \(identifier: schema).orders")
        try await threadPool.shutdownGracefully()
    }
}
