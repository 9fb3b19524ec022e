import Foundation
import Logging
import ServiceLifecycle
import Sluice
import Synchronization

/// Starts a function's process (its manifest's `runtime.command`), waits until it listens,
/// restarts it with backoff when it exits, and on SIGTERM stops it after the function's stream
/// trigger has drained (it runs before the triggers in the host's service group, so it stops
/// after them): SIGTERM, up to ``stopGrace``, then SIGKILL.
///
/// The process gets a small environment of its own (never Sluice's secrets): `PATH`, `HOME`,
/// `LANG`, the manifest's `environment`, `PORT`, `SLUICE_FUNCTION_NAME` and
/// `SLUICE_FUNCTION_TOKEN` (the bearer token every request carries). On Linux it is started
/// through `setpriv --pdeathsig KILL`, so it dies with the Sluice process even after a
/// `kill -9`; with `runtime.memory`, under `ulimit -v`.
public final class ProcessSupervisor: Service, CustomStringConvertible {
    public enum State: Sendable, Equatable {
        case starting
        case ready(port: Int)
        case stopped
    }

    let manifest: Manifest
    let runtime: FunctionRuntime
    let logger: Logger
    /// The bearer token of this supervisor's process.
    public let token: String
    /// Extra environment (the Lambda Runtime API's address).
    let extraEnvironment: @Sendable (Int) -> [String: String]
    /// Whether the process is ready, asked after it started (nil: it listens on its port).
    let readiness: (@Sendable (Int) async -> Bool)?
    private let state = Mutex<State>(.starting)
    private let pid = Mutex<Int32?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// How many times the process was started.
    private let starts = Atomic<Int>(0)

    static let stopGrace: Duration = .seconds(10)

    public var description: String { "ProcessSupervisor(\(manifest.name))" }

    public init(manifest: Manifest, runtime: FunctionRuntime, logger: Logger,
                extraEnvironment: @escaping @Sendable (Int) -> [String: String] = { _ in [:] },
                readiness: (@Sendable (Int) async -> Bool)? = nil) {
        self.manifest = manifest
        self.runtime = runtime
        var logger = logger
        logger[metadataKey: "function"] = .string(manifest.name)
        self.logger = logger
        self.token = Self.randomToken()
        self.extraEnvironment = extraEnvironment
        self.readiness = readiness
    }

    public var current: State { state.withLock { $0 } }
    /// The function's name.
    public var name: String { manifest.name }
    public var startCount: Int { starts.load(ordering: .relaxed) }
    /// The running process's id, if any.
    public var processID: Int32? { pid.withLock { $0 } }

    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(16) }.joined()
    }

    /// The port the process is ready on, waiting up to `deadline`.
    /// - Throws: `function_unavailable` (retryable) when it is not ready by then.
    public func readyPort(by deadline: ContinuousClock.Instant) async throws(FunctionError) -> Int {
        while true {
            switch current {
            case .ready(let port): return port
            case .stopped: throw .retryable("function_unavailable", "the function's process is stopping")
            case .starting:
                guard ContinuousClock.now < deadline else {
                    throw .retryable("function_unavailable", "the function's process is not ready")
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await supervise()
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            self.signal(SIGTERM)
        }
        state.withLock { $0 = .stopped }
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) || Task.isCancelled }

    func supervise() async {
        var delay = Duration.milliseconds(100)
        while !isStopping {
            let port = runtime.port ?? Self.freePort()
            let started = ContinuousClock.now
            let exit = await runOnce(port: port)
            state.withLock { $0 = .starting }
            if isStopping { break }
            // A process that ran a while before it ended is restarted at once; one that keeps
            // failing, with backoff up to 5 s.
            if ContinuousClock.now - started > .seconds(30) { delay = .milliseconds(100) }
            logger.warning("function process exited; restarting", metadata: [
                "status": .string(exit), "restart_in_ms": .stringConvertible(delay.milliseconds),
            ])
            let until = ContinuousClock.now + delay
            while !isStopping, ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(20)) }
            delay = min(delay * 2, .seconds(5))
        }
    }

    /// Starts the process, marks it ready once it answers, and returns how it ended.
    func runOnce(port: Int) async -> String {
        let process = Process()
        var arguments: [String] = []
        let launcher = "/usr/bin/setpriv"
        let hasLauncher = FileManager.default.isExecutableFile(atPath: launcher)
        if hasLauncher { arguments += ["--pdeathsig", "KILL", "--", "/bin/sh"] }
        let limit = runtime.memoryBytes.map { "ulimit -v \($0 / 1024) && " } ?? ""
        arguments += ["-c", "cd \"$1\" && shift && \(limit)exec \"$@\"", "sluice-function", runtime.directory]
        arguments += runtime.command ?? []
        process.executableURL = URL(fileURLWithPath: hasLauncher ? launcher : "/bin/sh")
        process.arguments = arguments
        var environment: [String: String] = [:]
        let inherited = ProcessInfo.processInfo.environment
        for name in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"] { environment[name] = inherited[name] }
        environment["PATH"] = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        environment["PYTHONUNBUFFERED"] = "1"
        for (name, value) in manifest.environment { environment[name] = value }
        environment["PORT"] = String(port)
        environment["SLUICE_FUNCTION_NAME"] = manifest.name
        environment["SLUICE_FUNCTION_TOKEN"] = token
        for (name, value) in extraEnvironment(port) { environment[name] = value }
        process.environment = environment
        starts.add(1, ordering: .relaxed)

        // The process is started and waited for on a thread of its own: `--pdeathsig` ends it
        // when the thread that started it ends, so that thread lives exactly as long as it.
        let exited = AsyncStream<String>.makeStream()
        let launched = AsyncStream<Int32?>.makeStream()
        let thread = Thread {
            do {
                try process.run()
            } catch {
                launched.continuation.yield(nil)
                launched.continuation.finish()
                exited.continuation.yield("not started: \(error)")
                exited.continuation.finish()
                return
            }
            launched.continuation.yield(process.processIdentifier)
            launched.continuation.finish()
            process.waitUntilExit()
            let how = process.terminationReason == .uncaughtSignal ? "signal \(process.terminationStatus)" : "exit \(process.terminationStatus)"
            exited.continuation.yield(how)
            exited.continuation.finish()
        }
        thread.name = "sluice-\(manifest.name)"
        thread.start()
        var launchedPID: Int32?
        for await value in launched.stream { launchedPID = value }
        guard let launchedPID else {
            for await how in exited.stream { return how }
            return "not started"
        }
        pid.withLock { $0 = launchedPID }
        logger.info("function process started", metadata: ["pid": .stringConvertible(launchedPID), "port": .stringConvertible(port)])
        if isStopping { signal(SIGTERM) }

        // Ready once it answers (or, for the Lambda Runtime API, once it asks for work); the
        // exit is watched meanwhile.
        let readiness = self.readiness
        let readyDeadline = ContinuousClock.now + runtime.readyTimeout
        let watcher = Task { [weak self] in
            while let self, !Task.isCancelled, ContinuousClock.now < readyDeadline {
                let ready = if let readiness { await readiness(port) } else { Self.listens(port: port) }
                if ready {
                    self.state.withLock { if $0 == .starting { $0 = .ready(port: port) } }
                    self.logger.info("function process ready", metadata: ["port": .stringConvertible(port)])
                    return
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            guard let self, !Task.isCancelled else { return }
            self.logger.error("function process not ready in time; restarting", metadata: [
                "ready_timeout_ms": .stringConvertible(self.runtime.readyTimeout.milliseconds),
            ])
            self.signal(SIGKILL)
        }
        var how = "ended"
        for await value in exited.stream { how = value }
        watcher.cancel()
        pid.withLock { $0 = nil }
        return how
    }

    /// Sends `signal` to the process, if it runs; a SIGTERM is followed by SIGKILL after ``stopGrace``.
    func signal(_ number: Int32) {
        guard let target = processID else { return }
        kill(target, number)
        guard number == SIGTERM else { return }
        Task { [weak self] in
            let until = ContinuousClock.now + Self.stopGrace
            while ContinuousClock.now < until {
                guard let self, self.processID == target else { return }
                try? await Task.sleep(for: .milliseconds(50))
            }
            if let self, self.processID == target {
                self.logger.warning("function process ignored SIGTERM; killing it")
                kill(target, SIGKILL)
            }
        }
    }

    /// Kills the process (a hung handler), to be restarted.
    public func restart() { signal(SIGKILL) }

    /// A port no one listens on now (bound and released).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : 0
    }

    /// Whether something accepts connections on 127.0.0.1:`port`.
    static func listens(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
