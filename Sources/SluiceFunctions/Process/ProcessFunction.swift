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
    /// The chunks handed to the process's Lambda runtime client (`protocol: lambda`).
    let lambda: LambdaBroker?
    /// The stream the function reads (named in a Lambda event's records).
    let stream: String
    /// The address of a process Sluice does not start (`runtime.url`, or `SLUICE_FUNCTION_URL`
    /// for a sidecar).
    let url: String?

    public init(setup: PipelineSetup) throws {
        manifest = setup.manifest
        guard let runtime = setup.manifest.runtime else {
            throw ManifestError(.missingField, file: manifest.file, key: "runtime", message: "is required for handler 'process'")
        }
        self.runtime = runtime
        logger = setup.logger
        maxAnswerBytes = manifest.maxChunkBytes * 4 + (1 << 20)
        stream = manifest.triggers.lazy.compactMap { if case .stream(let name) = $0 { name } else { nil } }.first ?? manifest.name
        var services: [any Service] = []
        let user: FunctionUser?
        do { user = try FunctionUser.resolve(setup.configuration.functionUser) } catch {
            throw ManifestError(.badValue, file: manifest.file, key: "runtime", message: "\(error)")
        }
        let sidecarURL = runtime.command != nil && runtime.wireProtocol == .http ? setup.configuration.functionURL : nil
        let sidecarLambda = runtime.wireProtocol == .lambda ? setup.configuration.lambdaAPIPort : nil
        if let apiPort = sidecarLambda {
            // Deployed beside Sluice (a sidecar sharing the pod's network): the Runtime API on the
            // port given, to whichever process of the pod polls it.
            let broker = LambdaBroker()
            services.append(LambdaRuntimeAPI(broker: broker, port: apiPort, function: manifest.name, maxResponseBytes: maxAnswerBytes,
                                             processID: nil, onPoll: {}, logger: setup.logger))
            lambda = broker
            supervisor = nil
            token = ""
        } else if runtime.wireProtocol == .lambda {
            // Sluice serves the Runtime API to the process on a port of its own; the process is
            // ready at its first poll, and what it held when it ended is retried.
            // The API binds a port the kernel picks (none found free and released, which another
            // local user could take first); the process starts once it is known.
            let broker = LambdaBroker()
            let apiPort = LambdaAPIPort()
            let supervisor = ProcessSupervisor(
                manifest: manifest, runtime: runtime, logger: setup.logger, readiness: .reported, user: user,
                reload: setup.configuration.reloadFunctionFiles, build: setup.configuration.buildFunctions,
                environment: Self.lambdaEnvironment(manifest: manifest, runtime: runtime, api: ""),
                startEnvironment: { ["AWS_LAMBDA_RUNTIME_API": "127.0.0.1:\(await apiPort.value())"] },
                onExit: { broker.processEnded() })
            var api = LambdaRuntimeAPI(broker: broker, port: 0, function: manifest.name, maxResponseBytes: maxAnswerBytes,
                                       processID: { supervisor.processID }, onPoll: { supervisor.markReady() }, logger: setup.logger)
            api.onListening = { apiPort.set($0) }
            services.append(api)
            lambda = broker
            self.supervisor = supervisor
            token = supervisor.token
        } else if runtime.command != nil, sidecarURL == nil {
            let supervisor = ProcessSupervisor(manifest: manifest, runtime: runtime, logger: setup.logger, user: user,
                                               reload: setup.configuration.reloadFunctionFiles, build: setup.configuration.buildFunctions)
            lambda = nil
            self.supervisor = supervisor
            token = supervisor.token
        } else {
            guard let token = ProcessInfo.processInfo.environment["SLUICE_FUNCTION_TOKEN"], token.utf8.count >= 16 else {
                throw ManifestError(.badValue, file: manifest.file, key: sidecarURL == nil ? "runtime.url" : "runtime",
                                    message: "a function at an address needs SLUICE_FUNCTION_TOKEN (at least 16 characters), the bearer token it checks")
            }
            self.token = token
            supervisor = nil
            lambda = nil
        }
        url = runtime.url ?? sidecarURL
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(2)), decompression: .disabled)
        configuration.httpVersion = .http1Only
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: max(2, manifest.concurrency))
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        // Run by the host, stopped after the trigger drains: the supervisor, then the client and
        // the Runtime API.
        services.append(ClientCloser(client: client))
        if let supervisor { services.append(supervisor) }
        setup.dependencies.shared.addProcessServices(services, supervisor: supervisor)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let deadline = min(context.deadline, ContinuousClock.now + runtime.timeout)
        if let lambda { return try await invokeLambda(chunk, context: context, broker: lambda, deadline: deadline) }
        let base: String
        if let supervisor {
            base = "http://127.0.0.1:\(try await supervisor.readyPort(by: deadline))"
        } else {
            base = url!
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

extension ProcessFunction {
    /// What a Lambda runtime interface client reads from its environment.
    public static func lambdaEnvironment(manifest: Manifest, runtime: FunctionRuntime, api: String, taskRoot: String? = nil) -> [String: String] {
        [
            "AWS_LAMBDA_RUNTIME_API": api,
            "AWS_LAMBDA_FUNCTION_NAME": manifest.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": String((runtime.memoryBytes ?? 128 << 20) >> 20),
            "AWS_REGION": "local",
            "LAMBDA_TASK_ROOT": taskRoot ?? runtime.directory,
        ]
    }

    /// Hands the chunk, as an SQS batch, to the process's Lambda runtime client and reads its
    /// result (``LambdaProtocol``). A handler that raises fails the attempt (retried, as Lambda
    /// retries a batch); no result by the deadline is a timeout; a process that ended, unavailable.
    func invokeLambda(_ chunk: Chunk, context: FunctionContext, broker: LambdaBroker, deadline: ContinuousClock.Instant) async throws -> [Outcome] {
        if let supervisor { _ = try await supervisor.readyPort(by: deadline) }
        let remaining = deadline - ContinuousClock.now
        let now = PipelineClock.milliseconds()
        let deadlineMilliseconds = now + remaining.milliseconds
        let body = LambdaProtocol.event(chunk, function: manifest.name, stream: stream, attempt: context.attempt,
                                        deadlineMilliseconds: deadlineMilliseconds, sentMilliseconds: now, config: manifest.config)
        let invocation = LambdaBroker.Invocation(id: RandomHex.make(words: 2), body: body,
                                                 deadlineMilliseconds: deadlineMilliseconds, traceID: chunk.traceID)
        switch await broker.invoke(invocation, timeout: remaining) {
        case .response(let result):
            return try LambdaProtocol.outcomes(result, for: chunk)
        case .error(let type):
            throw FunctionError.retryable("function_failed", "the handler raised \(type)")
        case .timeout:
            throw FunctionError.retryable("function_timeout", "the function did not answer within \(remaining.milliseconds) ms")
        case .unavailable:
            throw FunctionError.retryable("function_unavailable", "the function's process ended or is stopping")
        }
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
