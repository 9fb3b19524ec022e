import Logging
import Testing
@testable import Sluice

/// Records the order in which middleware ran.
struct Recording: Middleware {
    let name: String
    let log: LogBox

    func handle(_ chunk: Chunk, context: FunctionContext, next: any EventFunction) async throws -> [Outcome] {
        await log.append("\(name)>")
        let outcomes = try await next.handle(chunk, context: context)
        await log.append("<\(name)")
        return outcomes
    }
}

actor LogBox {
    var entries: [String] = []
    func append(_ entry: String) { entries.append(entry) }
}

@Suite("Function invocation")
struct FunctionInvokerTests {
    let logger = Logger(label: "test")

    func manifest(outputs: [String] = ["next"], middleware: [String] = [], visibility: Duration = .seconds(30)) -> Manifest {
        Manifest(name: "f", handler: "h", triggers: [.stream("f")], outputs: outputs, middleware: middleware, visibilityTimeout: visibility)
    }

    @Test func middlewareRunsInManifestOrder() async throws {
        let log = LogBox()
        var registry = FunctionRegistry<NoDependencies>()
        registry.register("h") { _ in
            ClosureEventFunction { chunk, _ in
                await log.append("handler")
                return chunk.events.map { .forward($0) }
            }
        }
        registry.registerMiddleware("outer") { _ in Recording(name: "outer", log: log) }
        registry.registerMiddleware("inner") { _ in Recording(name: "inner", log: log) }
        let m = manifest(middleware: ["outer", "inner"])
        let function = try await registry.makeHandler(FunctionSetup(manifest: m, logger: logger, dependencies: NoDependencies(), registry: FunctionRegistry())) as! any EventFunction
        let outcomes = try await FunctionInvoker(manifest: m, function: function, logger: logger)
            .invoke(Chunk(id: "1-0", events: [Event(["id": "a"])]), attempt: 1)
        #expect(outcomes == [.forward(Event(["id": "a"]))])
        #expect(await log.entries == ["outer>", "inner>", "handler", "<inner", "<outer"])
    }

    @Test func unknownHandlerAndMiddlewareAreManifestErrors() async {
        let registry = FunctionRegistry<NoDependencies>()
        let setup = FunctionSetup(manifest: manifest(), logger: logger, dependencies: NoDependencies(), registry: FunctionRegistry())
        await #expect(throws: ManifestError.self) { try await registry.makeHandler(setup) }
        var withHandler = FunctionRegistry<NoDependencies>()
        withHandler.register("h") { _ in ClosureEventFunction { _, _ in [] } }
        let bad = FunctionSetup(manifest: manifest(middleware: ["nope"]), logger: logger, dependencies: NoDependencies(), registry: FunctionRegistry())
        do {
            _ = try await withHandler.makeHandler(bad)
            Issue.record("expected an error")
        } catch let error as ManifestError {
            #expect(error.key == "middleware")
            #expect(error.message == "unknown middleware 'nope'")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func wrongOutcomeCountIsPermanent() async {
        let invoker = FunctionInvoker(manifest: manifest(), function: ClosureEventFunction { _, _ in [] }, logger: logger)
        do {
            _ = try await invoker.invoke(Chunk(id: "1-0", events: [Event(["id": "a"])]), attempt: 1)
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .permanent)
            #expect(error.code == "bad_outcomes")
        }
    }

    @Test func undeclaredOutputIsPermanent() async {
        let invoker = FunctionInvoker(manifest: manifest(), function: ClosureEventFunction { chunk, _ in
            chunk.events.map { .forward($0, output: "elsewhere") }
        }, logger: logger)
        await #expect(throws: FunctionError.permanent("bad_outcomes", "the function forwarded to 'elsewhere', which is not among its outputs")) {
            _ = try await invoker.invoke(Chunk(id: "1-0", events: [Event(["id": "a"])]), attempt: 1)
        }
    }

    @Test func foreignErrorsAreRetryableAndNameOnlyTheirType() async {
        struct Leaky: Error { let secret = "alice@example.com" }
        let invoker = FunctionInvoker(manifest: manifest(), function: ClosureEventFunction { _, _ in throw Leaky() }, logger: logger)
        await #expect(throws: FunctionError.retryable("unexpected_error", "Leaky")) {
            _ = try await invoker.invoke(Chunk(id: "1-0", events: [Event(["id": "a"])]), attempt: 1)
        }
    }

    @Test func deadlineMiddlewareFailsSlowHandlers() async throws {
        var registry = FunctionRegistry<NoDependencies>()
        registry.register("h") { _ in
            ClosureEventFunction { chunk, _ in
                try await Task.sleep(for: .seconds(10))
                return chunk.events.map { .forward($0) }
            }
        }
        let m = manifest(middleware: ["deadline"], visibility: .milliseconds(200))
        let function = try await registry.makeHandler(FunctionSetup(manifest: m, logger: logger, dependencies: NoDependencies(), registry: FunctionRegistry())) as! any EventFunction
        let invoker = FunctionInvoker(manifest: m, function: function, logger: logger)
        let started = ContinuousClock.now
        await #expect(throws: FunctionError.retryable("deadline_exceeded", "the function did not finish before its deadline")) {
            _ = try await invoker.invoke(Chunk(id: "1-0", events: [Event(["id": "a"])]), attempt: 1)
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func contextCarriesInvocationMetadata() async throws {
        let invoker = FunctionInvoker(manifest: manifest(), function: ClosureEventFunction { chunk, context in
            #expect(context.attempt == 3)
            #expect(context.jobID == "job")
            #expect(context.traceID == "trace")
            #expect(context.chunkID == "7-1")
            #expect(context.logger[metadataKey: "function"] == "f")
            #expect(context.logger[metadataKey: "job"] == "job")
            #expect(context.logger[metadataKey: "trace"] == "trace")
            return chunk.events.map { _ in .drop(reason: "seen") }
        }, logger: logger)
        let outcomes = try await invoker.invoke(Chunk(id: "7-1", jobID: "job", traceID: "trace", events: [Event(["id": "a"])]), attempt: 3)
        #expect(outcomes == [.drop(reason: "seen")])
    }
}
