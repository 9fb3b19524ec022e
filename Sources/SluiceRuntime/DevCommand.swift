import ArgumentParser
import Foundation
import Logging
import Sluice
import SluiceFunctions
import SluiceHTTP
import Synchronization

/// Set when a rebuild succeeded: `sluice dev` stops, then starts itself again on the new build.
private let restartOnNewBuild = Atomic<Bool>(false)

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run every function in one process; start local redis-server and PostgreSQL under .sluice/ unless SLUICE_REDIS_URL / SLUICE_DATABASE_URL are set.")

    @Option(help: "The HTTP port.")
    var port: Int = 8080

    @Option(help: "The address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "A command that rebuilds this binary (a package's own: \"swift build --product NAME-sluice\"): run when a file under --watch changes; dev then restarts itself on the new build, keeping its servers.")
    var rebuild: String?

    @Option(help: "With --rebuild: the folder whose changes rebuild (default: Sources).")
    var watch: String = "Sources"

    func run() async throws {
        // The binary's path now: after a rebuild the same path holds the new one.
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var configuration = Environment.configuration()
        // A function in a process of its own is restarted when its files change.
        configuration.reloadFunctionFiles = true
        configuration.buildFunctions = true
        let logger = Environment.bootstrapLogging(configuration)
        let environment = ProcessInfo.processInfo.environment
        var servers: LocalServers?
        if let adopted = environment["SLUICE_DEV_ADOPT"].map({ $0.split(separator: " ").map(String.init) }), adopted.count == 3,
           let redis = Int(adopted[1]), let postgres = Int(adopted[2]) {
            // Restarted on a new build: the servers the first start made are this one's to stop.
            var local = LocalServers(directory: adopted[0], logger: logger)
            local.redisPort = redis
            local.postgresPort = postgres
            try local.loadPasswords()
            servers = local
        } else if (environment["SLUICE_REDIS_URL"] ?? "").isEmpty || (environment["SLUICE_DATABASE_URL"] ?? "").isEmpty {
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
        // Out of a function process's reach (it runs as another user when dev runs as root).
        try LocalServers.protect(folder)
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
        let watcher = rebuild.map { command in
            Task.detached { [watch] in await Self.rebuildOnChange(command: command, folder: watch, logger: logger) }
        }
        let result: Result<Void, any Error>
        do {
            let manifests = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).loadAll()
            try await FunctionHost(configuration: configuration, logger: logger).run(manifests: manifests, host: host, port: port)
            result = .success(())
        } catch {
            result = .failure(error)
        }
        watcher?.cancel()
        if case .success = result, restartOnNewBuild.load(ordering: .relaxed) {
            var variables = ProcessInfo.processInfo.environment
            variables["SLUICE_REDIS_URL"] = configuration.redisURL
            variables["SLUICE_DATABASE_URL"] = configuration.databaseURL
            if let servers { variables["SLUICE_DEV_ADOPT"] = "\(servers.directory) \(servers.redisPort) \(servers.postgresPort)" }
            logger.notice("starting the new build", metadata: ["binary": .string(executable)])
            let argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) } + [nil]
            let envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
            execve(executable, argv, envp)
            logger.error("cannot start the new build", metadata: ["error": .string(String(cString: strerror(errno)))])
        }
        await servers?.stop()
        try result.get()
    }

    /// Every 300 ms, compares `folder`'s files; on a change runs `command` and, when it succeeds,
    /// stops dev (SIGTERM: it drains as usual) to start again on the new build. A failed build
    /// is logged and the running one kept.
    static func rebuildOnChange(command: String, folder: String, logger: Logger) async {
        var known = ProcessSupervisor.fingerprint(of: folder)
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(300))
            let now = ProcessSupervisor.fingerprint(of: folder)
            guard now != known else { continue }
            known = now
            logger.notice("sources changed; rebuilding", metadata: ["command": .string(command)])
            let started = ContinuousClock.now
            do {
                try await LocalServers.run("/bin/sh", ["-c", command])
            } catch {
                logger.error("the rebuild failed; the running build stays", metadata: ["error": .string("\(error)")])
                continue
            }
            logger.notice("rebuilt; restarting on the new build", metadata: ["build_ms": .stringConvertible((ContinuousClock.now - started).milliseconds)])
            restartOnNewBuild.store(true, ordering: .relaxed)
            kill(getpid(), SIGTERM)
            return
        }
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
