import Foundation
import NIOPosix
import Sluice
import SluicePostgres
import SluiceRedis

/// The real servers and the release binary that `make test` provides, read from the
/// environment. Missing pieces fail the tests with the command that provides them: an
/// end-to-end test that silently skips proves nothing.
struct TestEnvironment: Sendable {
    let redisBase: RedisEndpoint
    let databaseURL: String
    let binary: String
    let serversScript: String?
    let serversDirectory: String?
    let packageRoot: String

    static let shared: Result<TestEnvironment, TestSetupError> = {
        let env = ProcessInfo.processInfo.environment
        let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        guard let redis = env["SLUICE_REDIS_URL"], let database = env["SLUICE_DATABASE_URL"] else {
            return .failure(TestSetupError("SLUICE_REDIS_URL and SLUICE_DATABASE_URL are not set: run the suite with `make test`, which starts the servers"))
        }
        let binary = env["SLUICE_BIN"] ?? "\(root)/.build/release/sluice"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            return .failure(TestSetupError("\(binary) is missing: build it with `swift build -c release` (make test does)"))
        }
        guard let endpoint = try? RedisEndpoint(url: redis) else {
            return .failure(TestSetupError("SLUICE_REDIS_URL is not a redis:// URL"))
        }
        return .success(TestEnvironment(
            redisBase: endpoint, databaseURL: database, binary: binary,
            serversScript: env["SLUICE_SERVERS_SCRIPT"], serversDirectory: env["SLUICE_TEST_SERVERS_DIR"],
            packageRoot: root))
    }()

    static func get() throws -> TestEnvironment { try shared.get() }

    /// The same binary and scripts with other servers (`DIR/env` of `servers.sh start DIR`).
    func with(serversEnv path: String) throws -> TestEnvironment {
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard line.hasPrefix("export "), let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[line.index(line.startIndex, offsetBy: 7)..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let redis = values["SLUICE_REDIS_URL"], let database = values["SLUICE_DATABASE_URL"] else {
            throw TestSetupError("\(path) names no SLUICE_REDIS_URL and SLUICE_DATABASE_URL")
        }
        return TestEnvironment(redisBase: try RedisEndpoint(url: redis), databaseURL: database, binary: binary,
                               serversScript: serversScript, serversDirectory: nil, packageRoot: packageRoot)
    }

    /// The same servers with another `sluice` binary (a package's own, examples/swift-risk).
    func with(binary other: String) -> TestEnvironment {
        TestEnvironment(redisBase: redisBase, databaseURL: databaseURL, binary: other, serversScript: serversScript,
                        serversDirectory: serversDirectory, packageRoot: packageRoot)
    }

    /// A Redis URL of database `db` on the test server.
    func redisURL(db: Int) -> String { "redis://\(redisBase.host):\(redisBase.port)/\(db)" }

    /// The URL of database `name` on the test PostgreSQL server.
    func databaseURL(named name: String) -> String {
        String(databaseURL[..<databaseURL.lastIndex(of: "/")!]) + "/\(name)"
    }

    /// Drops and recreates database `name` (letters, digits and underscores: ours, not input),
    /// so that a test sees only its own rows however often the suite runs against one server.
    func freshDatabase(_ name: String) async throws -> String {
        let clients = try TestClients(environment: self, db: 0)
        do {
            try await clients.postgres.query("DROP DATABASE IF EXISTS \(identifier: name) WITH (FORCE)")
            try await clients.postgres.query("CREATE DATABASE \(identifier: name)")
        } catch {
            await clients.shutdown()
            throw error
        }
        await clients.shutdown()
        return databaseURL(named: name)
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Clients for the test's own checks, on a private thread pool.
final class TestClients: Sendable {
    let threadPool: NIOThreadPool
    let redis: RedisClient
    let postgres: PostgresPool

    init(environment: TestEnvironment, db: Int, databaseURL: String? = nil) throws {
        threadPool = NIOThreadPool(numberOfThreads: 4)
        threadPool.start()
        redis = RedisClient(endpoint: try RedisEndpoint(url: environment.redisURL(db: db)), threadPool: threadPool)
        postgres = PostgresPool(url: databaseURL ?? environment.databaseURL, threadPool: threadPool, maxConnections: 2)
    }

    func shutdown() async {
        redis.closeIdle()
        try? await threadPool.shutdownGracefully()
    }
}
