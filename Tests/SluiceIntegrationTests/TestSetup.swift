import Logging
import NIOPosix
import Sluice
import SluiceFunctions
import SluicePostgres
import SluiceRedis

extension PipelineSetup {
    /// The setup of one function under test. A client the test does not give points at a port
    /// nothing listens on: clients connect lazily, so a function that used it would fail loudly.
    static func testing(_ manifest: Manifest, threadPool: NIOThreadPool = .singleton, redis: RedisClient? = nil, postgres: PostgresPool? = nil,
                        configuration: RuntimeConfiguration = RuntimeConfiguration(), functionsDirectory: String = "/nonexistent") -> PipelineSetup {
        let nowhere = RedisClient(endpoint: try! RedisEndpoint(url: "redis://127.0.0.1:1"), threadPool: threadPool)
        var dependencies = PipelineDependencies(
            redis: redis ?? nowhere, postgres: postgres ?? PostgresPool(url: "postgres://127.0.0.1:1/none", threadPool: threadPool),
            manifests: ManifestLoader(functionsDirectory: functionsDirectory))
        // Without PostgreSQL, the datasets are the repository's files.
        if postgres == nil {
            let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
            dependencies.datasets = DatasetStore(fixed: try! DatasetFiles.load(directory: "\(root)/datasets"), pool: dependencies.postgres)
        }
        return PipelineSetup(manifest: manifest, logger: Logger(label: "test"), configuration: configuration,
                             dependencies: dependencies, registry: BuiltinFunctions.registry())
    }
}
