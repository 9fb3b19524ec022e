import ArgumentParser
import Foundation
import Sluice
import SluiceHTTP

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
        // A function in a process of its own is restarted when its files change.
        configuration.reloadFunctionFiles = true
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
        // Development secrets kept under .sluice/ (so `sluice token` signs with the same one),
        // for what the environment does not set.
        let folder = FileManager.default.currentDirectoryPath + "/.sluice"
        func fill(_ setting: WritableKeyPath<RuntimeConfiguration, String?>, file: String, variable: String) throws {
            guard configuration[keyPath: setting] == nil else { return }
            let secret = try Self.developmentSecret(directory: folder, file: file)
            configuration[keyPath: setting] = secret
            print("export \(variable)=\(secret)")
        }
        if configuration.jwtPublicKeyPath == nil, !configuration.jwtUsesKeySet { try fill(\.jwtSecret, file: "jwt-secret", variable: "SLUICE_JWT_SECRET") }
        try fill(\.pseudonymKey, file: "pseudonym-key", variable: "SLUICE_PSEUDONYM_KEY")
        if configuration.gatewaySigningKey == nil {
            // The gateway and the functions share this process: the key's two halves stay in it.
            let key = try Self.developmentGatewayKey(directory: folder)
            configuration.gatewaySigningKey = key
            print("export SLUICE_GATEWAY_SIGNING_KEY=\(key)")
        }
        try fill(\.webhookSecret, file: "webhook-secret", variable: "SLUICE_WEBHOOK_SECRET")
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

    /// The gateway's signing key in `directory/gateway-signing-key`, made when missing (an
    /// Ed25519 key, base64, mode 600).
    static func developmentGatewayKey(directory: String) throws -> String {
        let path = directory + "/gateway-signing-key"
        if let data = FileManager.default.contents(atPath: path) {
            let key = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if (try? CallerAssertionSigner(base64: key)) != nil { return key }
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let key = CallerAssertionSigner.generate().base64PrivateKey
        guard FileManager.default.createFile(atPath: path, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("cannot write \(path)")
        }
        return key
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
