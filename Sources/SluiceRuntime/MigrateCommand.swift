import ArgumentParser
import Foundation
import NIOPosix
import Sluice
import SluiceFunctions
import SluicePostgres

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the schema migrations and register the datasets declared in files (idempotent, safe to run concurrently).",
        discussion: """
            --roles also creates one PostgreSQL role per function of SLUICE_FUNCTIONS_DIR, \
            sluice_NAME, with only the privileges its handler needs, and sets them again on every \
            run (run as the schema's owner, with CREATEROLE). A role logs in with the password in \
            the file --role-passwords DIR/NAME, or else SLUICE_ROLE_PASSWORD_NAME (NAME in capitals, \
            - as _); a role with neither is created NOLOGIN.
            """)

    @Flag(help: "Also create and update one database role per function (sluice_NAME).")
    var roles = false

    @Option(name: .customLong("role-passwords"), help: "A directory with one file per function (named after it) holding its role's password.")
    var rolePasswords: String?

    func run() async throws {
        let configuration = Environment.configuration()
        let logger = Environment.bootstrapLogging(configuration)
        let manifests = roles ? try ManifestLoader(functionsDirectory: configuration.functionsDirectory).loadAll() : []
        let roleList = try manifests.map { manifest in
            DatabaseRoles.Role(function: manifest.name, handler: manifest.handler, password: try Self.password(for: manifest.name, directory: rolePasswords))
        }
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let pool = PostgresPool(url: configuration.databaseURL, threadPool: threadPool, maxConnections: 1)
        let outcome: Result<([Int], [String]), any Error>
        do {
            let applied = try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: logger).migrate()
            try await DatasetStore(pool: pool).registerFiles(
                in: configuration.datasetsDirectory, functions: ManifestLoader(functionsDirectory: configuration.functionsDirectory), logger: logger)
            let created = roles ? try await DatabaseRoles(pool: pool, logger: logger).apply(roleList) : []
            outcome = .success((applied, created))
        } catch {
            outcome = .failure(error)
        }
        try? await threadPool.shutdownGracefully()
        let (applied, created) = try outcome.get()
        print(applied.isEmpty
              ? "schema is current (version \(PipelineSchema.latestVersion))"
              : "applied migrations \(applied.map(String.init).joined(separator: ", ")); schema at version \(PipelineSchema.latestVersion)")
        if roles {
            let logins = roleList.filter { $0.password != nil }.count
            print("roles: \(roleList.map(\.name).joined(separator: ", ")) (\(created.count) created, \(logins) with a password)")
        }
    }

    /// The password of function `name`'s role: the file `directory/name` (trailing newline
    /// removed), else `SLUICE_ROLE_PASSWORD_NAME`; nil when neither is set.
    static func password(for name: String, directory: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        if let directory {
            let path = (directory as NSString).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: path) {
                guard let text = FileManager.default.contents(atPath: path).flatMap({ String(bytes: $0, encoding: .utf8) }) else {
                    throw CommandFailure("--role-passwords: \(path) cannot be read as UTF-8")
                }
                let password = text.trimmingCharacters(in: .newlines)
                guard !password.isEmpty else { throw CommandFailure("--role-passwords: \(path) is empty") }
                return password
            }
        }
        let variable = "SLUICE_ROLE_PASSWORD_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
        if let password = environment[variable], !password.isEmpty { return password }
        return nil
    }
}
