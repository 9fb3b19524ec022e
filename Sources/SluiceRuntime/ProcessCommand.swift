import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Sluice
import SluiceFunctions

/// `sluice process NAME`: function NAME served over Sluice's function protocol
/// (docs/function-protocol.md) on $PORT, as a process another Sluice starts or calls — a Swift
/// function (a package's own, or a built-in) out of process, in its own container or on another
/// machine. Every request must carry `Bearer $SLUICE_FUNCTION_TOKEN`.
struct ProcessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "process",
        abstract: "Serve one function over the function protocol on $PORT (a process function for another Sluice).",
        discussion: "The manifest is functions/NAME/function.yaml (SLUICE_FUNCTIONS_DIR); SLUICE_FUNCTION_TOKEN (16 or more characters) is the token callers must send.")

    @Argument(help: "The function's name (its folder under the functions directory).")
    var name: String

    func run() async throws {
        let configuration = Environment.configuration()
        let logger = Environment.bootstrapLogging(configuration)
        let environment = ProcessInfo.processInfo.environment
        guard let token = environment["SLUICE_FUNCTION_TOKEN"], token.utf8.count >= 16 else {
            throw CommandFailure("set SLUICE_FUNCTION_TOKEN (16 or more characters): the token every caller must send")
        }
        guard let port = environment["PORT"].flatMap(Int.init), (1...65535).contains(port) else {
            throw CommandFailure("set PORT: the port to listen on (127.0.0.1)")
        }
        let manifest = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).load(name)
        let host = FunctionHost(configuration: configuration, logger: logger)
        let clients = try host.makeClients(concurrency: manifest.concurrency)
        let registry = BuiltinFunctions.registry()
        let setup = PipelineSetup(manifest: manifest, logger: logger, configuration: configuration,
                                  dependencies: clients.dependencies(manifests: ManifestLoader(functionsDirectory: configuration.functionsDirectory)),
                                  registry: registry)
        guard let function = try await registry.makeHandler(setup) as? any EventFunction else {
            await clients.shutdown()
            throw CommandFailure("\(name) is not an event function")
        }
        let expected = "Bearer \(token)"
        let router = Router()
        router.post("/") { request, _ -> Response in
            guard let given = request.headers[.authorization], Self.constantTimeEquals(given, expected) else {
                return Response(status: .unauthorized)
            }
            let body = try await request.body.collect(upTo: manifest.maxChunkBytes * 4 + (1 << 20))
            guard let parsed = FunctionProtocol.parseRequest(Array(buffer: body)) else { return Response(status: .badRequest) }
            let remaining = parsed.deadlineMilliseconds.map { Duration.milliseconds(max(0, $0 - PipelineClock.milliseconds())) } ?? manifest.visibilityTimeout
            let context = FunctionContext(functionName: manifest.name, logger: logger, chunk: parsed.chunk, attempt: parsed.attempt,
                                          deadline: .now + remaining, environment: manifest.environment)
            let result: Result<[Outcome], FunctionError>
            do {
                result = .success(try await function.handle(parsed.chunk, context: context))
            } catch let error as FunctionError {
                result = .failure(error)
            } catch {
                result = .failure(.retryable("function_failed", "\(type(of: error))"))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(bytes: FunctionProtocol.answer(result, for: parsed.chunk))))
        }
        if environment["LISTEN_FDS"] == "1", environment["LISTEN_PID"] == String(getpid()) {
            // Started by a Sluice that bound the socket for it (descriptor 3): Hummingbird binds an
            // address itself, so the socket is closed and its port bound again at once.
            close(3)
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "sluice-process"),
                              logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        let result: Result<Void, any Error>
        do { result = .success(try await group.run()) } catch { result = .failure(error) }
        await clients.shutdown()
        try result.get()
    }

    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
