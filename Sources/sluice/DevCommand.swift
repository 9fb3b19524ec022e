import ArgumentParser
import Foundation
import Sluice

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run every function in one process; start local redis-server and PostgreSQL under .sluice/ unless SLUICE_REDIS_URL / SLUICE_DATABASE_URL are set.")

    @Option(help: "The HTTP port.")
    var port: Int = 8080

    @Option(help: "The address to listen on.")
    var host: String = "127.0.0.1"

    func run() async throws {
        var configuration = Environment.configuration()
        let logger = Environment.bootstrapLogging(configuration)
        let environment = ProcessInfo.processInfo.environment
        var servers: LocalServers?
        if (environment["SLUICE_REDIS_URL"] ?? "").isEmpty || (environment["SLUICE_DATABASE_URL"] ?? "").isEmpty {
            var local = LocalServers(directory: FileManager.default.currentDirectoryPath + "/.sluice", logger: logger)
            try await local.start()
            servers = local
            if (environment["SLUICE_REDIS_URL"] ?? "").isEmpty { configuration.redisURL = local.redisURL }
            if (environment["SLUICE_DATABASE_URL"] ?? "").isEmpty { configuration.databaseURL = local.databaseURL }
            print("export SLUICE_REDIS_URL=\(configuration.redisURL)")
            print("export SLUICE_DATABASE_URL=\(configuration.databaseURL)")
        }
        if configuration.jwtSecret == nil && configuration.jwtPublicKeyPath == nil {
            // A development secret kept under .sluice/, so `sluice token` can sign with it.
            configuration.jwtSecret = try Self.developmentSecret(directory: FileManager.default.currentDirectoryPath + "/.sluice")
            print("export SLUICE_JWT_SECRET=\(configuration.jwtSecret!)")
        }
        if configuration.pseudonymKey == nil {
            configuration.pseudonymKey = try Self.developmentSecret(directory: FileManager.default.currentDirectoryPath + "/.sluice", file: "pseudonym-key")
            print("export SLUICE_PSEUDONYM_KEY=\(configuration.pseudonymKey!)")
        }
        if configuration.webhookSecret == nil {
            configuration.webhookSecret = try Self.developmentSecret(directory: FileManager.default.currentDirectoryPath + "/.sluice", file: "webhook-secret")
            print("export SLUICE_WEBHOOK_SECRET=\(configuration.webhookSecret!)")
        }
        // The export lines are for the person (or script) that started dev: out before the logs.
        fflush(nil)  // every output stream; `stdout` itself is not concurrency-safe to name
        let result: Result<Void, any Error>
        do {
            let manifests = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).loadAll()
            try await FunctionHost(configuration: configuration, logger: logger).run(manifests: manifests, host: host, port: port)
            result = .success(())
        } catch {
            result = .failure(error)
        }
        await servers?.stop()
        try result.get()
    }

    /// The secret in `directory/file`, made (32 random bytes, hex) when missing.
    static func developmentSecret(directory: String, file: String = "jwt-secret") throws -> String {
        let path = directory + "/" + file
        if let data = FileManager.default.contents(atPath: path) {
            let secret = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if secret.utf8.count >= 32 { return secret }
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        guard FileManager.default.createFile(atPath: path, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("cannot write \(path)")
        }
        return secret
    }
}
