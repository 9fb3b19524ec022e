import Foundation
import Logging

/// The redis-server and PostgreSQL that `sluice dev` starts under `.sluice/` when no
/// `SLUICE_REDIS_URL` / `SLUICE_DATABASE_URL` is given, and stops on exit.
///
/// Both ask for a password (random, kept in `.sluice/redis-password` and
/// `.sluice/postgres-password`, mode 600): Redis through `requirepass` in a 600 config file (not
/// on its command line, which every user sees), PostgreSQL through `scram-sha-256` for every
/// connection, local or TCP. A `.sluice/` made before (trust, no password) is upgraded at start.
struct LocalServers {
    let directory: String
    let logger: Logger
    var redisPort = 0
    var postgresPort = 0
    static let postgresBin = "/usr/lib/postgresql/15/bin"

    init(directory: String, logger: Logger) {
        self.directory = directory
        self.logger = logger
    }

    var redisPassword = ""
    var postgresPassword = ""

    /// Sluice's URLs, with the passwords: never logged.
    var redisURL: String { "redis://:\(redisPassword)@127.0.0.1:\(redisPort)/0" }
    var databaseURL: String { "postgres://sluice:\(postgresPassword)@127.0.0.1:\(postgresPort)/sluice" }
    var isRoot: Bool { getuid() == 0 }

    /// The files under `.sluice/` that hold secrets (mode 600).
    static let secretFiles = ["jwt-secret", "pseudonym-key", "gateway-signing-key", "webhook-secret", "redis-password", "postgres-password", "redis.conf"]

    /// Makes `directory` (`.sluice/`) when missing and closes it: mode 700, or 711 for a root
    /// Sluice (the `postgres` user must pass through to its data; no one else can list it), and
    /// every secret file in it 600.
    static func protect(_ directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard chmod(directory, getuid() == 0 ? 0o711 : 0o700) == 0 else { throw CommandFailure("cannot set the mode of \(directory)") }
        for file in secretFiles where FileManager.default.fileExists(atPath: "\(directory)/\(file)") {
            guard chmod("\(directory)/\(file)", 0o600) == 0 else { throw CommandFailure("cannot set the mode of \(directory)/\(file)") }
        }
    }

    /// Reads (or makes) both passwords.
    mutating func loadPasswords() throws {
        redisPassword = try DevCommand.developmentSecret(directory: directory, file: "redis-password")
        postgresPassword = try DevCommand.developmentSecret(directory: directory, file: "postgres-password")
    }

    /// Starts both servers (creating their data on first use).
    mutating func start() async throws {
        guard let redisServer = Self.which("redis-server") else {
            throw CommandFailure("redis-server not found: install the Debian package 'redis-server' (apt-get install redis-server)")
        }
        for tool in ["initdb", "pg_ctl", "createdb"] where !FileManager.default.isExecutableFile(atPath: "\(Self.postgresBin)/\(tool)") {
            throw CommandFailure("\(Self.postgresBin)/\(tool) not found: install the Debian package 'postgresql-15' (apt-get install postgresql)")
        }
        let fm = FileManager.default
        try Self.protect(directory)
        try fm.createDirectory(atPath: "\(directory)/redis", withIntermediateDirectories: true)
        chmod("\(directory)/redis", 0o700)
        try loadPasswords()
        redisPort = try Self.freePort()
        postgresPort = try Self.freePort()

        // The password in a file of mode 600, not on the command line (ps shows that to everyone).
        let redisConfig = "\(directory)/redis.conf"
        guard fm.createFile(atPath: redisConfig, contents: Data("requirepass \(redisPassword)\n".utf8), attributes: [.posixPermissions: 0o600]),
              chmod(redisConfig, 0o600) == 0 else {
            throw CommandFailure("cannot write \(redisConfig)")
        }
        try await Self.run(redisServer, [
            redisConfig, "--port", "\(redisPort)", "--bind", "127.0.0.1", "--dir", "\(directory)/redis", "--daemonize", "yes",
            "--pidfile", "\(directory)/redis.pid", "--logfile", "\(directory)/redis.log",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        ])

        let data = "\(directory)/pg"
        let socketDir = "\(directory)/pgsock"
        try fm.createDirectory(atPath: socketDir, withIntermediateDirectories: true)
        // Only the server (and root) may reach its socket.
        chmod(socketDir, 0o700)
        if isRoot { try await Self.run("/bin/chown", ["postgres:postgres", socketDir]) }
        if !fm.fileExists(atPath: "\(data)/PG_VERSION") {
            try fm.createDirectory(atPath: data, withIntermediateDirectories: true)
            if isRoot { try await Self.run("/bin/chown", ["postgres:postgres", data]) }
            // The password through a file only the server's user reads, removed at once.
            let passwordFile = "\(socketDir)/initdb-password"
            defer { try? fm.removeItem(atPath: passwordFile) }
            guard fm.createFile(atPath: passwordFile, contents: Data("\(postgresPassword)\n".utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CommandFailure("cannot write \(passwordFile)")
            }
            if isRoot { try await Self.run("/bin/chown", ["postgres:postgres", passwordFile]) }
            try await runAsPostgres("\(Self.postgresBin)/initdb", [
                "-D", data, "-U", "sluice", "--auth=scram-sha-256", "--pwfile=\(passwordFile)", "-E", "UTF8", "--no-locale",
            ])
        } else if try Self.trusts(hba: "\(data)/pg_hba.conf") {
            try await upgradeTrust(data: data, socketDir: socketDir)
        }
        try await runAsPostgres("\(Self.postgresBin)/pg_ctl", [
            "-D", data, "-l", "\(socketDir)/pg.log", "-w", "-t", "30",
            "-o", "-p \(postgresPort) -k \(socketDir) -c listen_addresses=127.0.0.1", "start",
        ])
        // Exists already after the first run: ignore that failure.
        try? await runAsPostgres("\(Self.postgresBin)/createdb", ["-h", "127.0.0.1", "-p", "\(postgresPort)", "-U", "sluice", "sluice"],
                                 quiet: true, environment: ["PGPASSWORD": postgresPassword])
        logger.info("started local servers", metadata: [
            "redis_port": .stringConvertible(redisPort), "postgres_port": .stringConvertible(postgresPort), "dir": .string(directory),
        ])
    }

    /// The lines of a pg_hba.conf that asks every connection for a password.
    static let passwordHBA = """
        # Written by sluice dev: every connection needs the password in .sluice/postgres-password.
        local   all   all                  scram-sha-256
        host    all   all   127.0.0.1/32   scram-sha-256
        host    all   all   ::1/128        scram-sha-256

        """

    /// Whether a pg_hba.conf lets any connection in without a password (a `.sluice/` made before
    /// dev set one).
    static func trusts(hba path: String) throws -> Bool {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return text.split(separator: "\n").contains { line in
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return words.first?.hasPrefix("#") == false && words.contains { $0 == "trust" }
        }
    }

    /// Gives a cluster that trusted every local connection a password: started with no TCP
    /// listener and its socket in a folder only its user reaches, the role `sluice` gets the
    /// password, pg_hba.conf asks for it, and the cluster stops (to be started as usual).
    func upgradeTrust(data: String, socketDir: String) async throws {
        logger.notice("giving the local PostgreSQL a password (a .sluice/ from an older sluice dev trusted every connection)")
        try await runAsPostgres("\(Self.postgresBin)/pg_ctl", [
            "-D", data, "-l", "\(socketDir)/pg.log", "-w", "-t", "30",
            "-o", "-p \(postgresPort) -k \(socketDir) -c listen_addresses=", "start",
        ])
        let script = "\(socketDir)/set-password.sql"
        do {
            defer { try? FileManager.default.removeItem(atPath: script) }
            guard FileManager.default.createFile(atPath: script, contents: Data("ALTER ROLE sluice PASSWORD '\(postgresPassword)';\n".utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw CommandFailure("cannot write \(script)")
            }
            if isRoot { try await Self.run("/bin/chown", ["postgres:postgres", script]) }
            try await runAsPostgres("\(Self.postgresBin)/psql", [
                "-h", socketDir, "-p", "\(postgresPort)", "-U", "sluice", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-f", script,
            ], quiet: true)
            // Written in place: the file keeps its owner (the server's user) and mode.
            try Self.passwordHBA.write(toFile: "\(data)/pg_hba.conf", atomically: false, encoding: .utf8)
        } catch {
            try? await runAsPostgres("\(Self.postgresBin)/pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", "30", "stop"], quiet: true)
            throw error
        }
        try await runAsPostgres("\(Self.postgresBin)/pg_ctl", ["-D", data, "-m", "fast", "-w", "-t", "30", "stop"], quiet: true)
    }

    /// Stops both servers; their data stays under the directory for the next run.
    func stop() async {
        try? await runAsPostgres("\(Self.postgresBin)/pg_ctl", ["-D", "\(directory)/pg", "-m", "fast", "-w", "-t", "30", "stop"], quiet: true)
        if let cli = Self.which("redis-cli") {
            // The password through the environment, not the command line.
            try? await Self.run(cli, ["-p", "\(redisPort)", "shutdown"], quiet: true, environment: ["REDISCLI_AUTH": redisPassword])
        } else if let pid = try? String(contentsOfFile: "\(directory)/redis.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                  let value = Int32(pid) {
            kill(value, SIGTERM)
        }
        logger.info("stopped local servers")
    }

    func runAsPostgres(_ tool: String, _ arguments: [String], quiet: Bool = false, environment: [String: String] = [:]) async throws {
        if isRoot {
            try await Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", tool] + arguments, quiet: quiet, environment: environment)
        } else {
            try await Self.run(tool, arguments, quiet: quiet, environment: environment)
        }
    }

    /// Runs `tool` to completion. `posix_spawn` and `waitpid`, not Foundation's `Process`:
    /// `redis-server --daemonize` and `pg_ctl start` leave daemons holding the descriptors
    /// that `Process` watches to notice an exit, and its wait would never return.
    static func run(_ tool: String, _ arguments: [String], quiet: Bool = false, environment: [String: String] = [:]) async throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if quiet {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 2, 1)  // tool output to our stderr
        }
        let argv: [UnsafeMutablePointer<CChar>?] = ([tool] + arguments).map { strdup($0) } + [nil]
        var variables = ProcessInfo.processInfo.environment
        for (name, value) in environment { variables[name] = value }
        let envp: [UnsafeMutablePointer<CChar>?] = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, envp)
        guard spawned == 0 else { throw CommandFailure("cannot run \(tool): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        let exitCode = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        guard exitCode == 0 else {
            throw CommandFailure("\((tool as NSString).lastPathComponent) failed with status \(exitCode)")
        }
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/sbin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A TCP port on 127.0.0.1 that is free now.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CommandFailure("cannot open a socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw CommandFailure("cannot find a free port") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
