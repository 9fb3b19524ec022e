import Foundation
import Logging

/// The redis-server and PostgreSQL that `sluice dev` starts under `.sluice/` when no
/// `SLUICE_REDIS_URL` / `SLUICE_DATABASE_URL` is given, and stops on exit.
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

    var redisURL: String { "redis://127.0.0.1:\(redisPort)/0" }
    var databaseURL: String { "postgres://sluice@127.0.0.1:\(postgresPort)/sluice" }
    var isRoot: Bool { getuid() == 0 }

    /// Starts both servers (creating their data on first use).
    mutating func start() async throws {
        guard let redisServer = Self.which("redis-server") else {
            throw CommandFailure("redis-server not found: install the Debian package 'redis-server' (apt-get install redis-server)")
        }
        for tool in ["initdb", "pg_ctl", "createdb"] where !FileManager.default.isExecutableFile(atPath: "\(Self.postgresBin)/\(tool)") {
            throw CommandFailure("\(Self.postgresBin)/\(tool) not found: install the Debian package 'postgresql-15' (apt-get install postgresql)")
        }
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(directory)/redis", withIntermediateDirectories: true)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory)
        redisPort = try Self.freePort()
        postgresPort = try Self.freePort()

        try await Self.run(redisServer, [
            "--port", "\(redisPort)", "--bind", "127.0.0.1", "--dir", "\(directory)/redis", "--daemonize", "yes",
            "--pidfile", "\(directory)/redis.pid", "--logfile", "\(directory)/redis.log",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        ])

        let data = "\(directory)/pg"
        let socketDir = "\(directory)/pgsock"
        try fm.createDirectory(atPath: socketDir, withIntermediateDirectories: true)
        if isRoot { try await Self.run("/bin/chown", ["postgres:postgres", socketDir]) }
        if !fm.fileExists(atPath: "\(data)/PG_VERSION") {
            try fm.createDirectory(atPath: data, withIntermediateDirectories: true)
            if isRoot { try await Self.run("/bin/chown", ["postgres:postgres", data]) }
            try await runAsPostgres("\(Self.postgresBin)/initdb", ["-D", data, "-U", "sluice", "--auth=trust", "-E", "UTF8", "--no-locale"])
        }
        try await runAsPostgres("\(Self.postgresBin)/pg_ctl", [
            "-D", data, "-l", "\(socketDir)/pg.log", "-w", "-t", "30",
            "-o", "-p \(postgresPort) -k \(socketDir) -c listen_addresses=127.0.0.1", "start",
        ])
        // Exists already after the first run: ignore that failure.
        try? await runAsPostgres("\(Self.postgresBin)/createdb", ["-h", "127.0.0.1", "-p", "\(postgresPort)", "-U", "sluice", "sluice"], quiet: true)
        logger.info("started local servers", metadata: ["redis": .string(redisURL), "postgres": .string(databaseURL), "dir": .string(directory)])
    }

    /// Stops both servers; their data stays under the directory for the next run.
    func stop() async {
        try? await runAsPostgres("\(Self.postgresBin)/pg_ctl", ["-D", "\(directory)/pg", "-m", "fast", "-w", "-t", "30", "stop"], quiet: true)
        if let cli = Self.which("redis-cli") {
            try? await Self.run(cli, ["-p", "\(redisPort)", "shutdown"], quiet: true)
        } else if let pid = try? String(contentsOfFile: "\(directory)/redis.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                  let value = Int32(pid) {
            kill(value, SIGTERM)
        }
        logger.info("stopped local servers")
    }

    func runAsPostgres(_ tool: String, _ arguments: [String], quiet: Bool = false) async throws {
        if isRoot {
            try await Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", tool] + arguments, quiet: quiet)
        } else {
            try await Self.run(tool, arguments, quiet: quiet)
        }
    }

    /// Runs `tool` to completion. `posix_spawn` and `waitpid`, not Foundation's `Process`:
    /// `redis-server --daemonize` and `pg_ctl start` leave daemons holding the descriptors
    /// that `Process` watches to notice an exit, and its wait would never return.
    static func run(_ tool: String, _ arguments: [String], quiet: Bool = false) async throws {
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
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, environ)
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
