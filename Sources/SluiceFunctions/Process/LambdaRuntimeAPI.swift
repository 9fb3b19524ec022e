import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Sluice
import Synchronization

/// The chunks waiting for a Lambda runtime client and the answers it owes: ``LambdaFunction``
/// side puts an invocation in and awaits its result; the Runtime API's long poll takes it out.
final class LambdaBroker: Sendable {
    struct Invocation: Sendable {
        let id: String
        let body: [UInt8]
        let deadlineMilliseconds: Int64
        let traceID: String?
    }

    enum Result: Sendable, Equatable {
        case response([UInt8])
        /// The handler raised; its error type (never its message: it may quote the events).
        case error(type: String)
        case timeout
        case unavailable
    }

    private struct State {
        var queue: [Invocation] = []
        var pollers: [CheckedContinuation<Invocation?, Never>] = []
        var waiting: [String: CheckedContinuation<Result, Never>] = [:]
        var closed = false
    }
    private let state = Mutex(State())

    /// Hands `invocation` to the next poll and waits for its answer, up to `timeout`.
    func invoke(_ invocation: Invocation, timeout: Duration) async -> Result {
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            self?.finish(invocation.id, with: .timeout)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let poller: CheckedContinuation<Invocation?, Never>? = state.withLock { state in
                guard !state.closed else { return nil }
                state.waiting[invocation.id] = continuation
                if state.pollers.isEmpty {
                    state.queue.append(invocation)
                    return nil
                }
                return state.pollers.removeFirst()
            }
            if let poller {
                poller.resume(returning: invocation)
            } else if state.withLock({ $0.closed }) {
                continuation.resume(returning: .unavailable)
            }
        }
    }

    /// The next invocation, waiting for one; nil once the broker is closed or the process was
    /// replaced (a poll of the process that ended).
    func next() async -> Invocation? {
        await withCheckedContinuation { continuation in
            let ready: Invocation?? = state.withLock { state in
                if state.closed { return .some(nil) }
                if !state.queue.isEmpty { return .some(state.queue.removeFirst()) }
                state.pollers.append(continuation)
                return .none
            }
            if case .some(let invocation) = ready { continuation.resume(returning: invocation) }
        }
    }

    /// Completes the invocation `id`; false when it is not awaited (unknown, or cut at its deadline).
    @discardableResult
    func finish(_ id: String, with result: Result) -> Bool {
        let continuation = state.withLock { state in
            state.queue.removeAll { $0.id == id }
            return state.waiting.removeValue(forKey: id)
        }
        continuation?.resume(returning: result)
        return continuation != nil
    }

    /// The process ended: every invocation it held or would have taken is unavailable (and
    /// retried), and the polls it left open are answered.
    func processEnded() {
        let (waiting, pollers) = state.withLock { state in
            defer { state.queue.removeAll(); state.waiting.removeAll(); state.pollers.removeAll() }
            return (Array(state.waiting.values), state.pollers)
        }
        for continuation in waiting { continuation.resume(returning: .unavailable) }
        for poller in pollers { poller.resume(returning: nil) }
    }

    /// Stops taking invocations (the process drains).
    func close() {
        state.withLock { $0.closed = true }
        processEnded()
    }
}

/// The request context of the Runtime API: it knows the connection's far end.
struct LambdaRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    let localAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        localAddress = source.channel.localAddress
    }
}

/// The AWS Lambda Runtime API (2018-06-01) that Sluice serves on 127.0.0.1 to the process of a
/// function with `runtime.protocol: lambda`: `GET invocation/next`, `POST invocation/ID/response`,
/// `POST invocation/ID/error`, `POST init/error`. It answers only connections of the process it
/// supervises (the socket's owner, read from /proc): no other local program can take a chunk.
struct LambdaRuntimeAPI: Service, CustomStringConvertible {
    let broker: LambdaBroker
    let port: Int
    let function: String
    let maxResponseBytes: Int
    /// The pid of the supervised process, when it runs; nil: a sidecar's Runtime API, which
    /// answers any process of the pod (the pod's network namespace is the boundary).
    let processID: (@Sendable () -> Int32?)?
    /// Called at each poll of the process (its first poll makes it ready).
    let onPoll: @Sendable () -> Void
    let logger: Logger
    /// Told the port the API listens on once it does (`port` 0: one the kernel picked, so no
    /// other local user can take it between its choice and the bind).
    var onListening: @Sendable (Int) -> Void = { _ in }

    var description: String { "LambdaRuntimeAPI(\(function))" }

    static let prefix = "/2018-06-01/runtime"

    func run() async throws {
        let router = Router(context: LambdaRequestContext.self)
        let arn = "arn:aws:lambda:local:000000000000:function:\(function)"
        router.get("\(Self.prefix)/invocation/next") { _, context -> Response in
            try check(context)
            onPoll()
            guard let invocation = await broker.next() else {
                return Self.status(.serviceUnavailable, "Sluice is not handing out invocations")
            }
            var headers: HTTPFields = [.contentType: "application/json"]
            headers[HTTPField.Name("Lambda-Runtime-Aws-Request-Id")!] = invocation.id
            headers[HTTPField.Name("Lambda-Runtime-Deadline-Ms")!] = String(invocation.deadlineMilliseconds)
            headers[HTTPField.Name("Lambda-Runtime-Invoked-Function-Arn")!] = arn
            if let trace = invocation.traceID { headers[HTTPField.Name("Lambda-Runtime-Trace-Id")!] = "Root=\(trace)" }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: invocation.body)))
        }
        router.post("\(Self.prefix)/invocation/{id}/response") { request, context -> Response in
            try check(context)
            let id = try context.parameters.require("id")
            let body = try await request.body.collect(upTo: maxResponseBytes)
            guard broker.finish(id, with: .response(Array(buffer: body))) else {
                return Self.status(.badRequest, "no invocation \(id) is awaited")
            }
            return Self.status(.accepted, "OK")
        }
        router.post("\(Self.prefix)/invocation/{id}/error") { request, context -> Response in
            try check(context)
            let id = try context.parameters.require("id")
            let body = try? await request.body.collect(upTo: maxResponseBytes)
            let type = Self.errorType(request.headers[HTTPField.Name("Lambda-Runtime-Function-Error-Type")!], body: body)
            guard broker.finish(id, with: .error(type: type)) else {
                return Self.status(.badRequest, "no invocation \(id) is awaited")
            }
            return Self.status(.accepted, "OK")
        }
        router.post("\(Self.prefix)/init/error") { request, context -> Response in
            try check(context)
            let body = try? await request.body.collect(upTo: maxResponseBytes)
            let type = Self.errorType(request.headers[HTTPField.Name("Lambda-Runtime-Function-Error-Type")!], body: body)
            logger.error("the Lambda handler failed to start", metadata: ["error_type": .string(type)])
            return Self.status(.accepted, "OK")
        }
        let app = Application(router: router,
                              configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "sluice-lambda-runtime"),
                              onServerRunning: { [onListening] channel in onListening(channel.localAddress?.port ?? 0) },
                              logger: logger)
        try await withGracefulShutdownHandler {
            try await app.run()
        } onGracefulShutdown: {
            broker.close()
        }
    }

    /// Refuses a connection that is not the supervised process's.
    func check(_ context: LambdaRequestContext) throws {
        guard let processID else { return }
        guard let pid = processID(), let remote = context.remoteAddress?.port, let local = context.localAddress?.port,
              Self.socketOwned(by: pid, clientPort: remote, serverPort: local) else {
            throw HTTPError(.forbidden, message: "only the function's own process may use this Runtime API")
        }
    }

    /// Whether the TCP connection from 127.0.0.1:`clientPort` to 127.0.0.1:`serverPort` is one of
    /// process `pid`'s open sockets (its inode in /proc/net/tcp among /proc/PID/fd's links).
    static func socketOwned(by pid: Int32, clientPort: Int, serverPort: Int) -> Bool {
        guard let table = readProcFile("/proc/net/tcp") else { return false }
        let local = "0100007F:" + hex(clientPort), remote = "0100007F:" + hex(serverPort)
        var inode: Substring?
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // Established (state 01) and owned (inode not 0): an old connection of the same two
            // ports may linger in TIME_WAIT with no owner (loopback reuses its ports at once).
            if fields.count > 9, fields[1] == local, fields[2] == remote, fields[3] == "01", fields[9] != "0" { inode = fields[9]; break }
        }
        guard let inode else { return false }
        let target = "socket:[\(inode)]"
        let folder = "/proc/\(pid)/fd"
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return false }
        return descriptors.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(folder)/\($0)")) == target }
    }

    /// The whole of a /proc file, read to its end: it reports a size of 0, and a read that
    /// trusts the size stops after the first page (about 27 connections of /proc/net/tcp).
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += buffer[0..<count]
            if bytes.count > 64 << 20 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func hex(_ port: Int) -> String {
        let digits = String(port, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// An error type fit for a log line and a dead letter: `Runtime.ValueError` and the like.
    /// The header's, or else the body's `errorType` (awslambdaric sends it there); never the
    /// error's message.
    static func errorType(_ header: String?, body: ByteBuffer? = nil) -> String {
        var name = header ?? ""
        if name.isEmpty || name.hasSuffix("Unknown"), let body,
           case .string(let declared)? = (try? JSONParser().parse(Array(buffer: body)))?["errorType"] {
            name = declared
        }
        guard !name.isEmpty else { return "Unknown" }
        let kept = name.unicodeScalars.prefix(100).filter { $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "." || $0 == "_" }
        return kept.isEmpty ? "Unknown" : String(String.UnicodeScalarView(kept))
    }

    static func status(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = JSONValue.object(["status": .string(message)]).serializedBytes
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}
