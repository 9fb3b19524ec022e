import CSluiceSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
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
/// `SLUICE_FUNCTION_TOKEN` (the bearer token every request carries). It is started through
/// `setpriv --pdeathsig KILL`, so it dies with the Sluice process even after a `kill -9`, and
/// `env --default-signal`, so it does not inherit the SIGTERM that ServiceLifecycle ignores in
/// Sluice (an ignored signal stays ignored across exec); with `runtime.memory`, under `ulimit -v`;
/// with no descriptor of Sluice's open but standard input, output and error.
///
/// The walls around it (docs/security.md): Sluice makes itself non-dumpable before the first
/// start (no process of its user reads its `/proc/PID/environ` or memory); with a ``FunctionUser``
/// (a root Sluice's default) the process and its build run as that user, with no supplementary
/// groups; and each supervisor gives its process a private folder (`TMPDIR` and `HOME`, mode
/// 700, owned by that user), removed when the supervisor stops.
public final class ProcessSupervisor: Service, CustomStringConvertible {
    public enum State: Sendable, Equatable {
        case starting
        case ready(port: Int)
        case stopped
    }

    /// How the supervisor knows the process is ready.
    public enum Readiness: Sendable {
        /// Its port accepts a connection.
        case listens
        /// It says so itself (``markReady()``): a Lambda runtime client's first poll.
        case reported
    }

    let manifest: Manifest
    let runtime: FunctionRuntime
    let logger: Logger
    let readiness: Readiness
    /// Set in the process's environment besides Sluice's own variables.
    let extraEnvironment: [String: String]
    /// Variables known only once Sluice runs (the Lambda Runtime API's port), awaited before each start.
    let startEnvironment: @Sendable () async -> [String: String]
    /// Called each time the process has ended (before it is started again).
    let onExit: @Sendable () -> Void
    /// Whether a change to a file in the function's folder restarts the process (`sluice dev`).
    let reload: Bool
    /// Whether `runtime.build` runs before the process starts and, with `reload`, after each
    /// change (the running process keeps serving until the new build succeeds).
    let build: Bool
    /// The user the process and its build run as; `nil` for Sluice's own.
    public let user: FunctionUser?
    /// The process's private folder (`TMPDIR`, `HOME`), made at the first start.
    private let privateFolder = Mutex<String?>(nil)
    /// Set when a change ended the process: it is started again at once.
    private let reloading = Atomic<Bool>(false)
    /// Whether the process is handed the socket it listens on (descriptor 3, `LISTEN_FDS=1`),
    /// bound by Sluice so that no other local user can take its port first. Cleared when a
    /// process ended before it answered on one (a function that binds `PORT` itself: it was
    /// written before, and found the port taken); set again when the folder changes.
    private let passSocket = Atomic<Bool>(true)
    /// The bearer token of this supervisor's process.
    public let token = RandomHex.make(words: 4)
    private let state = Mutex<State>(.starting)
    private let pid = Mutex<Int32?>(nil)
    private let stopping = Atomic<Bool>(false)
    /// Set while the last build before the first start failed: no process runs.
    private let buildFailed = Atomic<Bool>(false)
    /// The build running now, if any (ended on shutdown).
    private let buildPID = Mutex<Int32?>(nil)

    static let stopGrace: Duration = .seconds(10)

    public var description: String { "ProcessSupervisor(\(manifest.name))" }

    public init(manifest: Manifest, runtime: FunctionRuntime, logger: Logger, readiness: Readiness = .listens, user: FunctionUser? = nil,
                reload: Bool = false, build: Bool = false, environment: [String: String] = [:],
                startEnvironment: @escaping @Sendable () async -> [String: String] = { [:] }, onExit: @escaping @Sendable () -> Void = {}) {
        self.startEnvironment = startEnvironment
        self.reload = reload
        self.user = user
        self.build = build && runtime.build != nil
        self.manifest = manifest
        self.runtime = runtime
        self.readiness = readiness
        self.extraEnvironment = environment
        self.onExit = onExit
        var logger = logger
        logger[metadataKey: "function"] = .string(manifest.name)
        self.logger = logger
    }

    public var current: State { state.withLock { $0 } }
    /// Whether the process answers (the host's readiness probe).
    public var isReady: Bool { if case .ready = current { true } else { false } }
    /// The function's name.
    public var name: String { manifest.name }
    /// The running process's id, if any.
    public var processID: Int32? { pid.withLock { $0 } }

    /// Marks the running process ready (``Readiness/reported``).
    public func markReady() {
        let marked = state.withLock { state in
            guard state == .starting, processID != nil else { return false }
            state = .ready(port: 0)
            return true
        }
        if marked { logger.info("function process ready") }
    }

    /// The port the process is ready on, waiting up to `deadline`.
    /// - Throws: `function_unavailable` (retryable) when it is not ready by then.
    public func readyPort(by deadline: ContinuousClock.Instant) async throws(FunctionError) -> Int {
        while true {
            switch current {
            case .ready(let port): return port
            case .stopped: throw .retryable("function_unavailable", "the function's process is stopping")
            case .starting:
                if buildFailed.load(ordering: .relaxed) {
                    throw .retryable("function_build_failed", "the function's build failed (the log has its errors)")
                }
                guard ContinuousClock.now < deadline else {
                    throw .retryable("function_unavailable", "the function's process is not ready")
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    public func run() async throws {
        Self.makeSluiceNonDumpable(logger: logger)
        defer { removePrivateFolder() }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                if reload { group.addTask { await self.watchFiles() } }
                await supervise()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.stopping.store(true, ordering: .relaxed)
            self.signal(SIGTERM)
            if let build = self.buildPID.withLock({ $0 }) { kill(build, SIGKILL) }
        }
        state.withLock { $0 = .stopped }
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) || Task.isCancelled }

    func supervise() async {
        // A build that fails is tried again after the next change to the folder.
        if build {
            var known = Self.fingerprint(of: runtime.directory)
            while !isStopping, !(await runBuild()) {
                buildFailed.store(true, ordering: .relaxed)
                while !isStopping {
                    try? await Task.sleep(for: Self.watchInterval)
                    let now = Self.fingerprint(of: runtime.directory)
                    if now != known { known = now; break }
                }
            }
        }
        buildFailed.store(false, ordering: .relaxed)
        var delay = Duration.milliseconds(100)
        while !isStopping {
            // An HTTP process gets its listening socket from Sluice; a Lambda client listens on nothing.
            let listener = readiness == .listens && passSocket.load(ordering: .relaxed) ? Self.listen(port: runtime.port ?? 0) : nil
            let port = listener?.port ?? runtime.port ?? Self.freePort()
            let started = ContinuousClock.now
            let exit = await runOnce(port: port, listener: listener?.descriptor)
            state.withLock { $0 = .starting }
            if isStopping { break }
            if reloading.exchange(false, ordering: .relaxed) {
                delay = .milliseconds(100)
                logger.info("function files changed; process restarted")
                continue
            }
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

    /// The process's environment: a few of Sluice's variables, never its secrets; the manifest's
    /// `environment`; `PORT` and the token (not for a build).
    func processEnvironment(port: Int?, folder: String? = nil) -> [String: String] {
        var environment: [String: String] = [:]
        let inherited = ProcessInfo.processInfo.environment
        for name in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"] { environment[name] = inherited[name] }
        environment["PATH"] = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        if let user, let path = environment["PATH"] { environment["PATH"] = user.reachable(path: path) }
        if let folder {
            environment["TMPDIR"] = folder
            environment["HOME"] = folder
        }
        environment["PYTHONUNBUFFERED"] = "1"
        for (name, value) in manifest.environment { environment[name] = value }
        for (name, value) in extraEnvironment { environment[name] = value }
        environment["SLUICE_FUNCTION_NAME"] = manifest.name
        if let port {
            environment["PORT"] = String(port)
            environment["SLUICE_FUNCTION_TOKEN"] = token
        }
        return environment
    }

    /// Starts the process, marks it ready once it answers, and returns how it ended. With
    /// `listener` (a listening socket on `port`, closed here) the process gets it as descriptor 3.
    func runOnce(port: Int, listener: Int32? = nil) async -> String {
        let folder: String
        do { folder = try preparePrivateFolder() } catch {
            if let listener { close(listener) }
            logger.error("function process not started", metadata: ["error": .string("\(error)")])
            return "not started: \(error.code)"
        }
        var arguments: [String] = []
        let launcher = "/usr/bin/setpriv"
        let hasLauncher = FileManager.default.isExecutableFile(atPath: launcher)
        if user != nil, !hasLauncher {
            logger.error("function process not started", metadata: ["error": .string("function_user_unavailable: /usr/bin/setpriv is needed to start it as another user")])
            if let listener { close(listener) }
            return "not started: function_user_unavailable"
        }
        if hasLauncher { arguments += ["--pdeathsig", "KILL"] + userArguments + ["--", "/usr/bin/env"] }
        let limit = runtime.memoryBytes.map { "ulimit -v \($0 / 1024) && " } ?? ""
        // bash closes every descriptor but 0, 1 and 2 first: none of Sluice's sockets (Redis,
        // PostgreSQL) may reach the user's code, whatever was not opened close-on-exec.
        // With a socket: descriptor 3 stays open, and LISTEN_PID names the process (bash execs it: the same pid).
        let inherited = listener == nil ? Self.closeInherited : Self.closeInheritedButListener + "export LISTEN_PID=$$; "
        arguments += ["--default-signal", "/bin/bash", "-c", inherited + "cd \"$1\" && unset OLDPWD && shift && \(limit)exec \"$@\"",
                      "sluice-function", runtime.directory]
        arguments += runtime.command ?? []
        let executable = hasLauncher ? launcher : "/usr/bin/env"
        var environment = processEnvironment(port: port, folder: folder)
        if listener != nil { environment["LISTEN_FDS"] = "1" }
        for (name, value) in await startEnvironment() { environment[name] = value }

        // The process is started and waited for on a thread of its own: `--pdeathsig` ends it
        // when the thread that started it ends, so that thread lives exactly as long as it.
        let exited = AsyncStream<String>.makeStream()
        let launched = AsyncStream<Int32?>.makeStream()
        let thread = Thread { [arguments, environment] in
            let spawned = Self.spawn(executable, arguments: arguments, environment: environment, listener: listener)
            // The process holds the socket now; Sluice's copy goes (its port is the process's alone).
            if let listener { close(listener) }
            guard let pid = spawned else {
                launched.continuation.yield(nil)
                launched.continuation.finish()
                exited.continuation.yield("not started: \(String(cString: strerror(errno)))")
                exited.continuation.finish()
                return
            }
            launched.continuation.yield(pid)
            launched.continuation.finish()
            exited.continuation.yield(Self.wait(for: pid))
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

        // Ready once its port accepts a connection; the exit is watched meanwhile.
        let readyDeadline = ContinuousClock.now + runtime.readyTimeout
        // The watcher answers whether the process became ready.
        let watcher = Task { [weak self] () -> Bool in
            while let self, !Task.isCancelled, ContinuousClock.now < readyDeadline {
                if self.readiness == .reported {
                    if self.isReady { return true }
                } else if listener == nil ? await Self.listens(port: port) : await Self.answers(port: port) {
                    // A passed socket accepts connections before the process does: it is ready
                    // once it answers a request (any status: without the token, 401).
                    self.state.withLock { if $0 == .starting { $0 = .ready(port: port) } }
                    self.logger.info("function process ready", metadata: ["port": .stringConvertible(port)])
                    return true
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
            guard let self, !Task.isCancelled else { return false }
            self.logger.error("function process not ready in time; restarting", metadata: [
                "ready_timeout_ms": .stringConvertible(self.runtime.readyTimeout.milliseconds),
            ])
            self.signal(SIGKILL)
            return false
        }
        var how = "ended"
        for await value in exited.stream { how = value }
        watcher.cancel()
        let becameReady = await watcher.value
        if listener != nil, !becameReady, !isStopping, !reloading.load(ordering: .relaxed) {
            passSocket.store(false, ordering: .relaxed)
            logger.warning("""
                function process ended before it answered on the socket Sluice passed it (descriptor 3, LISTEN_FDS=1); \
                it is started with PORT alone from now on, which another local user could take first: \
                make it take the socket (sluice new writes functions that do)
                """)
        }
        state.withLock { $0 = .starting }
        pid.withLock { $0 = nil }
        onExit()
        return how
    }

    /// Restarts the process when a file in the function's folder changes: every 200 ms it
    /// compares the folder's files (names, sizes, modification times; not `__pycache__`,
    /// `node_modules` or `.build`). The process gets SIGTERM and is started again at once.
    func watchFiles() async {
        var known = Self.fingerprint(of: runtime.directory)
        while !isStopping {
            try? await Task.sleep(for: Self.watchInterval)
            let now = Self.fingerprint(of: runtime.directory)
            guard now != known else { continue }
            known = now
            guard processID != nil else { continue }
            if build {
                // The running process serves until the new build is ready; a failed build leaves it.
                logger.info("function files changed; building")
                guard await runBuild(), !isStopping else { continue }
                known = Self.fingerprint(of: runtime.directory)
            }
            logger.info("function files changed; restarting the process")
            passSocket.store(true, ordering: .relaxed)
            reloading.store(true, ordering: .relaxed)
            signal(SIGTERM)
        }
    }

    /// bash's first words: close every descriptor but 0, 1 and 2 (none of Sluice's sockets may
    /// reach the user's code or build, whatever was not opened close-on-exec).
    static let closeInherited = "for f in /proc/$$/fd/*; do n=${f##*/}; if [ \"$n\" -gt 2 ]; then exec {n}>&-; fi; done; "
    /// The same, but for descriptor 3: the listening socket Sluice passes.
    static let closeInheritedButListener = "for f in /proc/$$/fd/*; do n=${f##*/}; if [ \"$n\" -gt 3 ]; then exec {n}>&-; fi; done; "

    /// How often the function's folder is compared for changes.
    static let watchInterval: Duration = .milliseconds(100)
    /// The longest a build may take.
    static let buildTimeout: Duration = .seconds(600)

    /// Runs `runtime.build` in the function's folder (the process's environment, its output kept
    /// apart from Sluice's log) and says whether it succeeded; a failure is logged with the end
    /// of its output (a compiler's errors).
    func runBuild() async -> Bool {
        guard let command = runtime.build else { return true }
        let started = ContinuousClock.now
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-build-\(manifest.name)-\(RandomHex.make(words: 2))").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        let folder: String
        do {
            folder = try preparePrivateFolder()
            try handOverBuildFolder()
        } catch {
            logger.error("function build failed", metadata: ["error": .string("\(error)")])
            return false
        }
        var arguments = ["--default-signal", "/bin/bash", "-c", Self.closeInherited + "cd \"$1\" && unset OLDPWD && shift && exec \"$@\"", "sluice-build",
                         runtime.directory] + command
        var executable = "/usr/bin/env"
        if user != nil {
            arguments = userArguments + ["--", "/usr/bin/env"] + arguments
            executable = "/usr/bin/setpriv"
        }
        let environment = processEnvironment(port: nil, folder: folder)
        let finished = AsyncStream<String>.makeStream()
        // The build's output file is opened by the spawn (as Sluice), before the user changes.
        let thread = Thread { [arguments, executable] in
            guard let pid = Self.spawn(executable, arguments: arguments, environment: environment, output: output) else {
                finished.continuation.yield("not started: \(String(cString: strerror(errno)))")
                finished.continuation.finish()
                return
            }
            self.buildPID.withLock { $0 = pid }
            finished.continuation.yield(Self.wait(for: pid))
            finished.continuation.finish()
        }
        thread.name = "sluice-build-\(manifest.name)"
        thread.start()
        let timeout = Task {
            try await Task.sleep(for: Self.buildTimeout)
            if let pid = self.buildPID.withLock({ $0 }) { kill(pid, SIGKILL) }
        }
        var how = "ended"
        for await value in finished.stream { how = value }
        timeout.cancel()
        buildPID.withLock { $0 = nil }
        let took = ContinuousClock.now - started
        guard how == "exit 0" else {
            if isStopping { return false }
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            logger.error("function build failed", metadata: [
                "status": .string(how), "build_ms": .stringConvertible(took.milliseconds),
                "output": .string(String(text.suffix(4000))),
            ])
            return false
        }
        logger.info("function built", metadata: ["build_ms": .stringConvertible(took.milliseconds)])
        return true
    }

    /// setpriv's arguments that start the process as ``user``: its uid and gid, no other group.
    var userArguments: [String] {
        guard let user else { return [] }
        return ["--reuid", "\(user.uid)", "--regid", "\(user.gid)", "--clear-groups"]
    }

    /// Makes Sluice non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`), once, before a process starts:
    /// a process of Sluice's own user can then read neither its `/proc/PID/environ` (the
    /// database URL, the keys) nor its memory, nor attach to it. Core dumps of Sluice are off
    /// with it.
    static func makeSluiceNonDumpable(logger: Logger) {
        guard sluice_get_dumpable() != 0 else { return }
        if sluice_set_dumpable(0) != 0 {
            logger.error("cannot make Sluice non-dumpable; a function's process of the same user could read its environment",
                         metadata: ["error": .string(String(cString: strerror(errno)))])
        }
    }

    /// The process's private folder (`TMPDIR` and `HOME`): made at the first start (mode 700,
    /// owned by ``user``), kept across restarts and builds, removed when the supervisor stops.
    /// Checks that the user can read the function's folder.
    /// - Throws: ``FunctionUserError`` `function_folder_unreadable` or `function_private_folder_failed`.
    func preparePrivateFolder() throws(FunctionUserError) -> String {
        if let user, !user.may(R_OK | X_OK, runtime.directory) {
            throw FunctionUserError(code: "function_folder_unreadable", message: """
                the function's folder \(runtime.directory) (and every folder above it) must be readable by \(user), \
                the user its process runs as (SLUICE_FUNCTION_USER)
                """)
        }
        return try privateFolder.withLock { folder throws(FunctionUserError) -> String in
            if let folder { return folder }
            var base = FileManager.default.temporaryDirectory.path
            while base.count > 1, base.hasSuffix("/") { base.removeLast() }
            if let user, !user.may(X_OK, base) { base = "/tmp" }
            var template = Array("\(base)/sluice-fn-\(manifest.name)-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else {
                throw FunctionUserError(code: "function_private_folder_failed", message: "cannot make a private folder in \(base): \(String(cString: strerror(errno)))")
            }
            let path = String(cString: made)
            if let user, chown(path, user.uid, user.gid) != 0 {
                let reason = String(cString: strerror(errno))
                rmdir(path)
                throw FunctionUserError(code: "function_private_folder_failed", message: "cannot give \(path) to \(user): \(reason)")
            }
            folder = path
            return path
        }
    }

    /// Removes the private folder and what the process left in it.
    func removePrivateFolder() {
        guard let folder = privateFolder.withLock({ value in defer { value = nil }; return value }) else { return }
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// With a ``user`` and `runtime.build`: `.build` in the function's folder, made when missing,
    /// is handed to the user (it and everything in it), the one place there a build may write.
    /// - Throws: ``FunctionUserError`` `function_build_folder_failed`.
    func handOverBuildFolder() throws(FunctionUserError) {
        guard let user else { return }
        let folder = runtime.directory + "/.build"
        var isFolder: ObjCBool = false
        if !FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false) } catch {
                throw FunctionUserError(code: "function_build_folder_failed", message: "cannot make \(folder)")
            }
        } else if !isFolder.boolValue {
            throw FunctionUserError(code: "function_build_folder_failed", message: "\(folder) is not a folder")
        }
        // lchown: a link in it is handed over, never what it points to.
        var paths = [folder]
        if let walker = FileManager.default.enumerator(atPath: folder) {
            while let path = walker.nextObject() as? String { paths.append(folder + "/" + path) }
        }
        for path in paths where lchown(path, user.uid, user.gid) != 0 {
            throw FunctionUserError(code: "function_build_folder_failed", message: "cannot give \(path) to \(user): \(String(cString: strerror(errno)))")
        }
    }

    /// The folder's files, sizes and modification times.
    public static func fingerprint(of directory: String) -> [String: String] {
        var result: [String: String] = [:]
        let skipped: Set<String> = ["__pycache__", "node_modules", ".build", ".git"]
        guard let walker = FileManager.default.enumerator(atPath: directory) else { return result }
        while let path = walker.nextObject() as? String {
            if skipped.contains((path as NSString).lastPathComponent) { walker.skipDescendants(); continue }
            guard result.count < 10_000, let attributes = walker.fileAttributes, attributes[.type] as? FileAttributeType == .typeRegular else { continue }
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            result[path] = "\(attributes[.size] as? Int ?? -1)@\(modified)"
        }
        return result
    }

    /// Starts `executable` with standard input from /dev/null, standard output and error
    /// Sluice's, every signal at its default and none blocked. `posix_spawn`, not Foundation's
    /// `Process`: `Process` notices an exit through a descriptor the child holds, and the child
    /// closes every inherited descriptor (its exit was then noticed only at the next child's).
    static func spawn(_ executable: String, arguments: [String], environment: [String: String], output: String? = nil,
                      listener: Int32? = nil) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // The listening socket as descriptor 3 (dup2 clears its close-on-exec flag).
        if let listener { posix_spawn_file_actions_adddup2(&actions, listener, 3) }
        if let output {
            // Standard output and error to `output` (a build's, apart from Sluice's log).
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { errno = result; return nil }
        return pid
    }

    /// Waits for `pid` to end (on the calling thread) and says how it did.
    static func wait(for pid: pid_t) -> String {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { return "ended (\(String(cString: strerror(errno))))" }
        }
        let signal = status & 0x7F
        return signal == 0 ? "exit \((status >> 8) & 0xFF)" : "signal \(signal)"
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

    /// A socket listening on 127.0.0.1:`port` (0: one the kernel picks), close-on-exec (only the
    /// process it is handed to gets it), and its port; nil when it cannot be bound.
    static func listen(port: Int) -> (descriptor: Int32, port: Int)? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && Glibc.listen(fd, 128) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { close(fd); return nil }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Whether an HTTP server answers on 127.0.0.1:`port`: a `POST /` without the token gets any
    /// answer (the protocol's 401) within 500 ms. An event-loop connection, not a blocking one.
    static func answers(port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(500))
                .connect(host: "127.0.0.1", port: port) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
            return try await channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(string: "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
                return try await withThrowingTaskGroup(of: Bool.self) { group in
                    group.addTask {
                        for try await _ in inbound { return true }
                        return false
                    }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(500))
                        return false
                    }
                    let first = try await group.next() ?? false
                    group.cancelAll()
                    return first
                }
            }
        } catch {
            return false
        }
    }

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

    /// Whether something accepts connections on 127.0.0.1:`port` (an event-loop connect, not a
    /// blocking one on the cooperative pool).
    static func listens(port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(500))
                .connect(host: "127.0.0.1", port: port).get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}
