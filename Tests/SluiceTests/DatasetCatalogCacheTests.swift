import NIOPosix
import Testing
@testable import Sluice
@testable import SluiceFunctions
@testable import SluicePostgres

/// The catalog's cache while PostgreSQL is away: a spec read before answers (the router asks
/// for one on every chunk of every stage), unless the chunk needs a newer version.
@Suite struct DatasetCatalogCacheTests {
    @Test func aSpecReadBeforeAnswersWhilePostgreSQLIsAway() async throws {
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        // Nothing listens on port 1: every read fails as `postgres_unavailable`.
        let store = DatasetStore(pool: PostgresPool(url: "postgres://sluice@127.0.0.1:1/sluice", threadPool: threadPool, maxConnections: 1))
        let spec = try DatasetSpec(json: ["name": "orders", "fields": [["name": "order_id", "type": "string", "required": true]], "key": ["order_id"]])
        let stored = DatasetStore.StoredDataset(spec: spec, version: 2, origin: "api", createdAt: "", updatedAt: "")
        store.cache.withLock { $0["orders"] = .init(stored: stored, readAt: .now - .seconds(600)) }

        #expect(try await store.spec("orders")?.version == 2)
        #expect(try await store.spec("orders", atLeast: 2)?.spec == spec)
        // A chunk of version 3 cannot be served by version 2, and an unknown name has nothing cached.
        for (name, version) in [("orders", 3), ("readings", 1)] {
            do {
                _ = try await store.spec(name, atLeast: version)
                Issue.record("\(name)@\(version) was answered without PostgreSQL")
            } catch let error as PostgresError {
                #expect(error.code == .unavailable)
            }
        }
        try await threadPool.shutdownGracefully()
    }
}
