import AsyncHTTPClient
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Forwards requests to a function running in another process, streaming both bodies (an
/// upload passes through in the chunks it arrives in, with backpressure, never held whole).
///
/// An upstream that refuses the connection answers 502 `upstream_unavailable`; one that does
/// not connect or goes silent for longer than the timeouts answers 504 `upstream_timeout`.
public final class UpstreamProxy: Service, Sendable {
    public struct Timeouts: Sendable {
        /// Connecting to the upstream.
        public var connect: Duration
        /// Silence while waiting for the upstream's answer or its next bytes.
        public var idle: Duration
        /// The longest one request may take, body transfers included.
        public var total: Duration

        public init(connect: Duration = .seconds(2), idle: Duration = .seconds(60), total: Duration = .seconds(3600)) {
            self.connect = connect
            self.idle = idle
            self.total = total
        }
    }

    /// Request headers that describe one hop, not the request (RFC 9110 §7.6.1), and `host`.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host",
    ]

    let client: HTTPClient
    let timeouts: Timeouts

    public init(timeouts: Timeouts = Timeouts()) {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .init(timeouts.connect), read: .init(timeouts.idle)),
            decompression: .disabled)
        configuration.httpVersion = .http1Only
        configuration.connectionPool = .init(idleTimeout: .seconds(30))
        self.client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        self.timeouts = timeouts
    }

    /// Keeps the client until the process drains, then closes its connections.
    public func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }

    /// `request` forwarded to `base` (`http://host:port`).
    public func forward(_ request: Request, to base: String, logger: Logger) async throws -> Response {
        let headers = request.headers
        var upstream = HTTPClientRequest(url: base + request.uri.description)
        upstream.method = HTTPMethod(rawValue: request.method.rawValue)
        // The allow-list again (the gateway applies it first): nothing a function does not read
        // leaves for another pod, whoever calls the proxy.
        for field in ForwardedHeaders.filter(headers) where !Self.hopByHop.contains(field.name.canonicalName) {
            upstream.headers.add(name: field.name.rawName, value: field.value)
        }
        let gate = BodyGate()
        if request.method != .get, request.method != .head {
            let length: HTTPClientRequest.Body.Length = headers[.contentLength].flatMap { Int64($0) }.map { .known($0) } ?? .unknown
            upstream.body = .stream(GatedBody(base: request.body, gate: gate), length: length)
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(upstream, deadline: .now() + .init(timeouts.total), logger: logger)
        } catch {
            await gate.close()
            throw Self.problem(for: error, logger: logger)
        }
        // The upstream may answer before it has read the whole body (a 413, a 415). The client
        // must stop reading it before this handler returns: the server then drains what is left,
        // and two readers of one body at once is a crash.
        await gate.close()
        var fields = HTTPFields()
        for header in response.headers where !Self.hopByHop.contains(header.name.lowercased()) && header.name.lowercased() != "content-length" {
            if let name = HTTPField.Name(header.name) { fields.append(HTTPField(name: name, value: header.value)) }
        }
        if let length = response.headers.first(name: "content-length") { fields[.contentLength] = length }
        return Response(status: .init(code: Int(response.status.code)), headers: fields,
                        body: ResponseBody(asyncSequence: response.body))
    }

    static func problem(for error: any Error, logger: Logger) -> Problem {
        if let client = error as? HTTPClientError {
            switch client {
            case .connectTimeout, .readTimeout, .deadlineExceeded, .writeTimeout:
                return Problem(.gatewayTimeout, code: "upstream_timeout", detail: "the function did not answer in time")
            default:
                break
            }
        }
        logger.warning("upstream failed", metadata: ["error": .string(String(describing: error))])
        return Problem(.badGateway, code: "upstream_unavailable", detail: "the function is not reachable")
    }
}

/// Lets the upstream client read a request body until ``close()``, which ends the body for
/// the client (its next read answers nil) and waits for a read in progress to finish.
final class BodyGate: Sendable {
    private struct State {
        var closed = false
        var reading = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Whether a read may start; `false` once closed.
    func beginRead() -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.reading = true
            return true
        }
    }

    func endRead() {
        let waiters = state.withLock { state in
            state.reading = false
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = state.withLock { state in
                state.closed = true
                if state.reading { state.waiters.append(continuation) }
                return !state.reading
            }
            if idle { continuation.resume() }
        }
    }
}

/// A request body read through a ``BodyGate``.
struct GatedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let base: RequestBody
    let gate: BodyGate

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: RequestBody.AsyncIterator
        let gate: BodyGate

        mutating func next() async throws -> ByteBuffer? {
            guard gate.beginRead() else { return nil }
            do {
                let buffer = try await base.next()
                gate.endRead()
                return buffer
            } catch {
                gate.endRead()
                throw error
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), gate: gate)
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
