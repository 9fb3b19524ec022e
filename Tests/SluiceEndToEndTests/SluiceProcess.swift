import Foundation
import Sluice

/// A child process started with `posix_spawn` and reaped with `waitpid`. Foundation's
/// `Process` is not used: on Linux its exit monitoring was seen to miss a child's exit and
/// leave `waitUntilExit` hanging.
final class Child: @unchecked Sendable {
    // `status` is written only by `poll()`, which the owning test calls from one task at a time.
    let pid: pid_t
    private var status: Int32?

    /// Starts `binary`; its environment is the test's with `environment` added, or, with
    /// `inherit` false, `environment` alone (as a container gets it).
    init(_ binary: String, _ arguments: [String], environment: [String: String], inherit: Bool = true,
         stdin: String = "/dev/null", stdout: String, stderr: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let merged = inherit ? ProcessInfo.processInfo.environment.merging(environment) { $1 } : environment
        let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        // Every signal at its default and none blocked, as a shell or a container starts a
        // process: the test's threads block most signals, and a mask is inherited across exec.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let result = posix_spawn(&pid, binary, &actions, &attributes, argv, envp)
        guard result == 0 else { throw TestSetupError("cannot start \(binary): errno \(result)") }
        self.pid = pid
    }

    /// The exit status (or 128 + signal), or nil while the child runs.
    func poll() -> Int32? {
        if let status { return status }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        guard result == pid else { return nil }
        let signal = raw & 0x7F
        status = signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
        return status
    }

    var isRunning: Bool { poll() == nil }

    /// Waits for the child to exit; answers its status, or nil on timeout.
    func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let status = poll() { return status }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// A `sluice` process started by a test, with its output in a log file. Like a container, it
/// gets only the environment it is given (and `PATH`), not the test runner's.
final class SluiceProcess: Sendable {
    let child: Child
    let name: String
    let port: Int
    let logPath: String

    /// Starts `sluice ARGUMENTS` with `environment` added to the test's environment.
    init(binary: String, arguments: [String], environment: [String: String], name: String, port: Int, logDirectory: String) throws {
        self.name = name
        self.port = port
        logPath = "\(logDirectory)/\(name)-\(port)-\(UUID().uuidString.prefix(6)).log"
        let path = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"]
        // The tests' gateway key, unless the test sets a key itself (an empty value: none).
        let keys = TestCaller.environment(for: arguments)
        let merged = path.merging(keys) { $1 }.merging(environment) { $1 }.filter { !(keys.keys.contains($0.key) && $0.value.isEmpty) }
        child = try Child(binary, arguments, environment: merged, inherit: false, stdout: logPath, stderr: logPath)
    }

    /// `sluice serve NAME --port PORT`.
    static func serve(_ name: String, port: Int, environment: [String: String], in directory: String, binary: String) throws -> SluiceProcess {
        try SluiceProcess(binary: binary, arguments: ["serve", name, "--port", "\(port)", "--host", "127.0.0.1"],
                          environment: environment, name: name, port: port, logDirectory: directory)
    }

    var pid: Int32 { child.pid }
    var isRunning: Bool { child.isRunning }

    /// Waits until `/health/ready` answers 200.
    func waitReady(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = child.poll() {
                throw TestSetupError("\(name) exited with status \(status) before it was ready:\n\(tail())")
            }
            if let response = try? await HTTP.request("GET", "http://127.0.0.1:\(port)/health/ready"), response.status == 200 {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError("\(name) was not ready within \(timeout):\n\(tail())")
    }

    func signal(_ signal: Int32) {
        kill(child.pid, signal)
    }

    /// Waits for the process to exit; answers its status, or nil on timeout.
    func waitExit(timeout: Duration) async -> Int32? {
        await child.wait(timeout: timeout)
    }

    /// Stops the process (SIGKILL if it does not end on SIGTERM within 10 s).
    func stop() async {
        guard child.isRunning else { return }
        signal(SIGTERM)
        if await waitExit(timeout: .seconds(10)) == nil {
            signal(SIGKILL)
            _ = await waitExit(timeout: .seconds(5))
        }
    }

    /// The last lines of the process's log.
    func tail(_ lines: Int = 30) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// Runs a command to completion (at most `timeout`) and answers its status and output.
func runCommand(_ binary: String, _ arguments: [String], environment: [String: String] = [:], input: Data? = nil,
                timeout: Duration = .seconds(120)) async throws -> (status: Int32, output: String, error: String) {
    let directory = try makeTemporaryDirectory("cmd")
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let outPath = "\(directory)/out", errPath = "\(directory)/err", inPath = "\(directory)/in"
    _ = FileManager.default.createFile(atPath: inPath, contents: input ?? Data())
    let path = binary.hasPrefix("/") ? binary : "/usr/bin/\(binary)"
    let child = try Child(path, arguments, environment: environment, stdin: inPath, stdout: outPath, stderr: errPath)
    guard let status = await child.wait(timeout: timeout) else {
        kill(child.pid, SIGKILL)
        _ = await child.wait(timeout: .seconds(5))
        throw TestSetupError("\(binary) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
    }
    let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let error = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return (status, output, error)
}

/// A free TCP port on 127.0.0.1.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A fresh temporary directory.
func makeTemporaryDirectory(_ prefix: String) throws -> String {
    let path = NSTemporaryDirectory() + "sluice-\(prefix)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A temporary folder a function's process may write in (mode 777): Sluice starts it as
/// `nobody` when the tests run as root (CI).
func makeSharedDirectory(_ prefix: String) throws -> String {
    let path = try makeTemporaryDirectory(prefix)
    guard chmod(path, 0o777) == 0 else { throw TestSetupError("cannot open \(path) to every user") }
    return path
}

/// The JSON log lines of a process's output (other lines skipped), each as its string fields.
func jsonLogLines(_ log: String) -> [[String: String]] {
    log.split(separator: "\n").compactMap { line -> [String: String]? in
        guard line.hasPrefix("{"), case .object(let object)? = try? JSONParser().parse(Array(line.utf8)) else { return nil }
        var fields: [String: String] = [:]
        for (key, value) in object { if let text = value.stringValue { fields[key] = text } }
        return fields
    }
}

/// The samples of a Prometheus text exposition, by series (`name{labels}` as written).
func metricSeries(_ text: String) -> [String: Double] {
    var series: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        series[String(line[..<space])] = value
    }
    return series
}
