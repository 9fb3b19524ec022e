import Foundation
import Logging
import NIOPosix
import Sluice
import SluiceFunctions
import SluicePostgres
import Testing

/// The enrich function on the lookup tables the migration seeds, in a real PostgreSQL.
@Suite("Enrich function", .serialized)
struct EnrichIntegrationTests {
    static let manifest = Manifest(name: "enrich", handler: "enrich", triggers: [.stream("enrich")], outputs: ["transform"])

    /// A started thread pool and a pool on the migrated test database.
    static func migratedPool() async throws -> (NIOThreadPool, PostgresPool) {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_DATABASE_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL is not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let pool = PostgresPool(url: url, threadPool: threadPool, maxConnections: 1)
        try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
        return (threadPool, pool)
    }

    @Test func seededTablesAndAnUnreachableDatabase() async throws {
        let (threadPool, pool) = try await Self.migratedPool()
        let manifest = Self.manifest
        func invoker(_ pool: PostgresPool) throws -> FunctionInvoker {
            let function = try EnrichFunction(setup: .testing(manifest, threadPool: threadPool, postgres: pool))
            return FunctionInvoker(manifest: manifest, function: function, logger: Logger(label: "test"))
        }
        let event = Event(["context": ["device_type": "desktop", "location": ["country": "JP", "region": "13"]]])
        let outcomes = try await invoker(pool).invoke(Chunk(id: "1-0", events: [event]), attempt: 1)
        #expect(outcomes == [.forward(Event(["context": [
            "device_type": "desktop", "location": ["country": "JP", "region": "13", "country_name": "Japan"], "device_class": "computer",
        ]]))])
        // Every country gen_events.py uses is known.
        let known = try await pool.query("SELECT count(*) FROM lookup_countries WHERE code = ANY(\("{US,DE,FR,GB,IN,BR,JP}")::text[])")
        #expect(known.scalar == "7")

        let dead = PostgresPool(url: "postgres://sluice@127.0.0.1:1/sluice", threadPool: threadPool, maxConnections: 1)
        await #expect(throws: FunctionError.retryable("lookup_unavailable", "the lookup tables could not be loaded")) {
            _ = try await invoker(dead).invoke(Chunk(id: "2-0", events: [event]), attempt: 1)
        }
        try await threadPool.shutdownGracefully()
    }

    /// A dataset whose chain leaves enrich out passes through it unchanged.
    @Test func aDatasetWhoseChainLeavesEnrichOutPassesUnchanged() async throws {
        let (threadPool, pool) = try await Self.migratedPool()
        let manifest = Self.manifest
        var setup = PipelineSetup.testing(manifest, threadPool: threadPool, postgres: pool)
        let plain = try DatasetSpec(json: ["name": "plain", "fields": [["name": "id", "type": "string", "required": true]], "key": "id",
                                           "chain": ["validate", "transform", "load"]])
        let enriched = try DatasetSpec(json: ["name": "enriched", "fields": [["name": "id", "type": "string", "required": true]], "key": "id"])
        setup.dependencies.datasets = DatasetStore(fixed: [plain, enriched], pool: pool)
        let invoker = FunctionInvoker(manifest: manifest, function: try EnrichFunction(setup: setup), logger: Logger(label: "test"))
        let event = Event(["id": "a", "context": ["location": ["country": "JP"]]])
        #expect(try await invoker.invoke(Chunk(id: "1-0", events: [event], dataset: DatasetReference(name: "plain", version: 1)), attempt: 1)
                == [.forward(event)])
        #expect(try await invoker.invoke(Chunk(id: "2-0", events: [event], dataset: DatasetReference(name: "enriched", version: 1)), attempt: 1)
                == [.forward(Event(["id": "a", "context": ["location": ["country": "JP", "country_name": "Japan"], "device_class": .null]]))])
        try await threadPool.shutdownGracefully()
    }
}
