import ArgumentParser
import Foundation
import Sluice
import SluiceFunctions
import SluiceHTTP
import Logging
import ServiceLifecycle

struct InvokeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invoke",
        abstract: "Invoke an event function synchronously on events from a file or stdin and print the outcomes.",
        discussion: "Events are a JSON array or NDJSON (one object per line). The outcomes print as the JSON that POST /invoke answers.")

    @Argument(help: "The function's name.")
    var name: String

    @Option(help: "A file of events (default: standard input).")
    var file: String?

    @Option(help: "The dataset the events belong to (default: events).")
    var dataset: String?

    @Option(help: "Call the function this many times with the same chunk (after a warm-up of a tenth as many) and print the latency of a call, not the outcomes.")
    var `repeat`: Int = 1

    func run() async throws {
        var configuration = Environment.configuration()
        configuration.buildFunctions = true
        let logger = Environment.bootstrapLogging(configuration)
        let manifest = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).load(name)
        let data: Data
        if let file {
            guard let contents = FileManager.default.contents(atPath: file) else { throw CommandFailure("cannot read \(file)") }
            data = contents
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        let events = try Self.parseEvents(Array(data))
        let host = FunctionHost(configuration: configuration, logger: logger)
        let clients = try host.makeClients(concurrency: 1)
        let result: Result<Void, any Error>
        do {
            result = .success(try await invoke(events, manifest: manifest, clients: clients, configuration: configuration, logger: logger))
        } catch {
            result = .failure(error)
        }
        await clients.shutdown()
        try result.get()
    }

    func invoke(_ events: [Event], manifest: Manifest, clients: FunctionHost.Clients, configuration: RuntimeConfiguration, logger: Logger) async throws {
        let registry = BuiltinFunctions.registry()
        let dependencies = clients.dependencies(manifests: ManifestLoader(functionsDirectory: configuration.functionsDirectory))
        let setup = PipelineSetup(manifest: manifest, logger: logger, configuration: configuration,
                                  dependencies: dependencies, registry: registry)
        guard let function = try await registry.makeHandler(setup) as? any EventFunction else {
            throw CommandFailure("\(name) is not an event function")
        }
        let invoker = FunctionInvoker(manifest: manifest, function: function, logger: logger)
        // Version 0: whatever version the catalog holds.
        let chunk = Chunk(id: "invoke-\(UUID().uuidString.lowercased())", events: events,
                          dataset: dataset.map { DatasetReference(name: $0, version: 0) })
        // A function in a process of its own (manifest `runtime`): its process is started for
        // the call and stopped after it, as `serve` does.
        let services = dependencies.shared.takeProcessServices()
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: logger))
        let running = Task { try await group.run() }
        let outcome: Result<[Outcome], FunctionError>
        var timings: JSONValue?
        do {
            if `repeat` > 1 {
                timings = try await Self.time(invoker, chunk: chunk, calls: `repeat`)
                outcome = .success([])
            } else {
                outcome = .success(try await invoker.invoke(chunk, attempt: 1))
            }
        } catch {
            outcome = .failure(error)
        }
        await group.triggerGracefulShutdown()
        _ = try? await running.value
        switch outcome {
        case .success(let outcomes):
            if let timings {
                print(timings.serializedString)
            } else {
                let result: JSONValue = ["function": .string(name), "outcomes": .array(outcomes.map(RuntimeRoutes.describe))]
                print(result.serializedString)
            }
        case .failure(let error):
            throw CommandFailure("\(name) failed: \(error.description)")
        }
    }

    /// `calls` calls of `chunk`, one at a time, after `calls / 10` (at least 5) unmeasured:
    /// the latency of a call in milliseconds (mean, p50, p90, p99) and per event in microseconds.
    static func time(_ invoker: FunctionInvoker, chunk: Chunk, calls: Int) async throws(FunctionError) -> JSONValue {
        for _ in 0..<max(5, calls / 10) { _ = try await invoker.invoke(chunk, attempt: 1) }
        var samples: [Double] = []
        samples.reserveCapacity(calls)
        let clock = ContinuousClock()
        for _ in 0..<calls {
            let start = clock.now
            _ = try await invoker.invoke(chunk, attempt: 1)
            samples.append(Double((clock.now - start).nanoseconds) / 1_000_000)
        }
        samples.sort()
        func percentile(_ p: Double) -> Double { samples[min(samples.count - 1, Int((Double(samples.count) * p).rounded(.up)) - 1)] }
        func rounded(_ value: Double) -> JSONValue { .double((value * 1000).rounded() / 1000) }
        let mean = samples.reduce(0, +) / Double(samples.count)
        return [
            "function": .string(invoker.manifest.name), "events": .int(Int64(chunk.events.count)), "calls": .int(Int64(calls)),
            "mean_ms": rounded(mean), "p50_ms": rounded(percentile(0.5)), "p90_ms": rounded(percentile(0.9)),
            "p99_ms": rounded(percentile(0.99)), "per_event_us": rounded(mean * 1000 / Double(max(1, chunk.events.count))),
        ]
    }

    /// A JSON array, or NDJSON.
    static func parseEvents(_ bytes: [UInt8]) throws -> [Event] {
        let first = bytes.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        if first == UInt8(ascii: "[") {
            do {
                guard case .array(let items) = try JSONParser().parse(bytes) else { return [] }
                return items.map(Event.init)
            } catch {
                throw CommandFailure("the events are not valid JSON: \(error)")
            }
        }
        var events: [Event] = []
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
        where line.contains(where: { ![0x20, 0x09, 0x0D].contains($0) }) {
            do {
                events.append(Event(try JSONParser().parse(line)))
            } catch {
                throw CommandFailure("line \(index + 1) is not valid JSON: \(error)")
            }
        }
        return events
    }
}
