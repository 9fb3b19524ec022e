import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Sluice

/// A function in a process of its own, in any language (manifest `runtime`): each chunk, after
/// the function's middleware, is POSTed to the process as Sluice's function protocol says
/// (``FunctionProtocol``, docs/function-protocol.md), and its answer becomes the outcomes. The
/// stream trigger around it keeps every guarantee: retries with backoff, dead letters, the
/// atomic forward-and-ack.
///
/// With `runtime.command` the process is started and supervised here (``ProcessSupervisor``);
/// with `runtime.url` it is an address the operator runs (a sidecar), and the bearer token is
/// `SLUICE_FUNCTION_TOKEN` of Sluice's environment.
public final class ProcessFunction: EventFunction, Sendable {
    let manifest: Manifest
    let runtime: FunctionRuntime
    let client: HTTPClient
    let token: String
    /// The supervisor of a started process (nil for a `url`).
    public let supervisor: ProcessSupervisor?
    let logger: Logger
    /// The most bytes an answer may have.
    let maxAnswerBytes: Int

    public init(setup: PipelineSetup) throws {
        manifest = setup.manifest
        guard let runtime = setup.manifest.runtime else {
            throw ManifestError(.missingField, file: manifest.file, key: "runtime", message: "is required for handler 'process'")
        }
        self.runtime = runtime
        logger = setup.logger
        maxAnswerBytes = manifest.maxChunkBytes * 4 + (1 << 20)
        if runtime.command != nil {
            let supervisor = ProcessSupervisor(manifest: manifest, runtime: runtime, logger: setup.logger)
            self.supervisor = supervisor
            token = supervisor.token
        } else {
            guard let token = ProcessInfo.processInfo.environment["SLUICE_FUNCTION_TOKEN"], token.utf8.count >= 16 else {
                throw ManifestError(.badValue, file: manifest.file, key: "runtime.url",
                                    message: "a function at an address needs SLUICE_FUNCTION_TOKEN (at least 16 characters), the bearer token it checks")
            }
            self.token = token
            supervisor = nil
        }
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(2)), decompression: .disabled)
        configuration.httpVersion = .http1Only
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: max(2, manifest.concurrency))
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        // Run by the host, stopped after the trigger drains: the supervisor, then the client.
        setup.dependencies.shared.addProcessServices([ClientCloser(client: client)] + (supervisor.map { [$0] } ?? []), supervisor: supervisor)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let deadline = min(context.deadline, ContinuousClock.now + runtime.timeout)
        let base: String
        if let supervisor {
            base = "http://127.0.0.1:\(try await supervisor.readyPort(by: deadline))"
        } else {
            base = runtime.url!
        }
        let remaining = deadline - ContinuousClock.now
        let deadlineMilliseconds = PipelineClock.milliseconds() + remaining.milliseconds
        var request = HTTPClientRequest(url: base + "/")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Sluice-Protocol", value: String(FunctionProtocol.version))
        request.headers.add(name: "Sluice-Deadline-Ms", value: String(deadlineMilliseconds))
        if let trace = chunk.traceID { request.headers.add(name: "Sluice-Trace-Id", value: trace) }
        let body = FunctionProtocol.request(chunk, function: manifest.name, attempt: context.attempt,
                                            deadlineMilliseconds: deadlineMilliseconds, config: manifest.config)
        request.body = .bytes(ByteBuffer(bytes: body))
        let status: Int
        let answer: [UInt8]
        do {
            let response = try await client.execute(request, deadline: .now() + .nanoseconds(max(remaining.nanoseconds, 1)))
            status = Int(response.status.code)
            let collected = try await response.body.collect(upTo: maxAnswerBytes)
            answer = Array(buffer: collected)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw FunctionError.retryable("function_timeout", "the function did not answer within \(remaining.milliseconds) ms")
        } catch is NIOTooManyBytesError {
            throw FunctionError.permanent("bad_outcomes", "the answer is larger than \(maxAnswerBytes) bytes")
        } catch {
            if ContinuousClock.now >= deadline {
                throw FunctionError.retryable("function_timeout", "the function did not answer within \(remaining.milliseconds) ms")
            }
            throw FunctionError.retryable("function_unavailable", "the function's process could not be reached")
        }
        guard status == 200 else { throw FunctionProtocol.failure(status: status) }
        return try FunctionProtocol.outcomes(answer, for: chunk)
    }
}

/// Closes an HTTP client's connections when the process drains.
struct ClientCloser: Service, CustomStringConvertible {
    let client: HTTPClient
    var description: String { "HTTPClientCloser" }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
