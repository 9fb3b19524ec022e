import Foundation
import Sluice
@testable import SluiceFunctions
import Testing

/// The one table of what each function's database role may do (finding 14).
@Suite struct FunctionGrantsTests {
    func shipped() throws -> [Manifest] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        return try ManifestLoader(functionsDirectory: "\(root)/functions").loadAll()
    }

    @Test func everyShippedFunctionHasItsOwnGrants() throws {
        let manifests = try shipped()
        #expect(manifests.count == 12)
        for manifest in manifests { #expect(FunctionGrants.byHandler[manifest.handler] != nil, "\(manifest.handler)") }
        // A handler that is not built in may read the ledger and nothing else.
        #expect(FunctionGrants.forHandler("process") == FunctionGrants.minimal)
        #expect(FunctionGrants.minimal.tables == [FunctionGrants.ledger])
        #expect(FunctionGrants.forHandler("gateway") == FunctionGrants.minimal)
    }

    @Test func everyTableNamedIsOneTheMigrationsCreate() {
        let sql = PipelineSchema.migrations.map(\.sql).joined(separator: "\n")
        for (handler, grants) in FunctionGrants.byHandler {
            for table in grants.tables where table.name != "schema_migrations" {
                #expect(sql.contains("CREATE TABLE \(table.name) ("), "\(handler): \(table.name)")
                for column in table.columns ?? [] { #expect(sql.contains(column), "\(handler): \(table.name).\(column)") }
            }
            for function in grants.functions {
                #expect(sql.contains("CREATE FUNCTION \(function.prefix { $0 != "(" })("), "\(handler): \(function)")
            }
        }
    }

    @Test func theWallsFindingFourteenAskedFor() {
        let enrich = FunctionGrants.forHandler("enrich"), load = FunctionGrants.forHandler("load")
        // enrich reads its lookups and the catalog, nothing personal.
        for table in ["consents", "audit_log", "erasures", "events", "quarantine", "async_calls", "jobs"] {
            #expect(enrich.privileges(on: table).isEmpty, "\(table)")
            #expect(enrich.tables.allSatisfy { $0.name != table }, "\(table)")
        }
        #expect(enrich.privileges(on: "lookup_countries") == [.select])
        // load reads a job's status and dataset, never changes a job; writes its datasets and ledger.
        #expect(load.privileges(on: "jobs").isEmpty)
        #expect(load.privileges(on: "jobs", column: "status") == [.select])
        #expect(load.privileges(on: "jobs", column: "created_by").isEmpty)
        #expect(load.privileges(on: "events") == [.select, .insert])
        #expect(load.privileges(on: "load_ledger") == [.select, .insert])
        // The fence reads whether a grant came after an erasure, not the purposes.
        #expect(load.privileges(on: "consents", column: "purpose").isEmpty)
        #expect(load.privileges(on: "consents", column: "granted") == [.select])
        // Only privacy reads the audit log or changes consents; the others that audit only append
        // (and read back the id of their row).
        for (handler, grants) in FunctionGrants.byHandler where handler != "privacy" {
            #expect(!grants.privileges(on: "audit_log").contains(.select), "\(handler)")
            #expect(!grants.privileges(on: "audit_log", column: "actor").contains(.select), "\(handler)")
            #expect(grants.privileges(on: "audit_log").isSubset(of: [.insert]), "\(handler)")
            #expect(grants.privileges(on: "consents").isDisjoint(with: [.insert, .update, .delete]), "\(handler)")
        }
        #expect(FunctionGrants.forHandler("privacy").privileges(on: "audit_log") == [.select, .insert])
        // Nobody may change or delete audit rows (the triggers refuse them anyway).
        for (handler, grants) in FunctionGrants.byHandler {
            #expect(grants.privileges(on: "audit_log").isDisjoint(with: [.update, .delete]), "\(handler)")
        }
        // Only ingest makes datasets' tables; only the job recorder and ingest change jobs.
        #expect(FunctionGrants.byHandler.filter { $0.value.ownsDatasetTables }.map(\.key) == ["ingest"])
        #expect(FunctionGrants.byHandler.filter { $0.value.privileges(on: "jobs").contains(.update) }.map(\.key).sorted() == ["ingest", "job-recorder"])
        // Every role reads the ledger (readiness).
        for (handler, grants) in FunctionGrants.byHandler { #expect(grants.privileges(on: "schema_migrations") == [.select], "\(handler)") }
    }

    @Test func aRoleIsNamedAfterItsFunction() {
        #expect(DatabaseRoles.roleName(for: "load") == "sluice_load")
        #expect(Manifest(name: "jobs", handler: "job-recorder").databaseRole == "sluice_jobs")
    }
}
