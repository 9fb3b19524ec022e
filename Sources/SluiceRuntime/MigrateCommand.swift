import ArgumentParser
import NIOPosix
import Sluice
import SluiceFunctions
import SluicePostgres

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the schema migrations and register the datasets declared in files (idempotent, safe to run concurrently).")

    func run() async throws {
        let configuration = Environment.configuration()
        let logger = Environment.bootstrapLogging(configuration)
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let pool = PostgresPool(url: configuration.databaseURL, threadPool: threadPool, maxConnections: 1)
        let outcome: Result<[Int], any Error>
        do {
            let applied = try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: logger).migrate()
            try await DatasetStore(pool: pool).registerFiles(
                in: configuration.datasetsDirectory, functions: ManifestLoader(functionsDirectory: configuration.functionsDirectory), logger: logger)
            outcome = .success(applied)
        } catch {
            outcome = .failure(error)
        }
        try? await threadPool.shutdownGracefully()
        let applied = try outcome.get()
        print(applied.isEmpty
              ? "schema is current (version \(PipelineSchema.latestVersion))"
              : "applied migrations \(applied.map(String.init).joined(separator: ", ")); schema at version \(PipelineSchema.latestVersion)")
    }
}
