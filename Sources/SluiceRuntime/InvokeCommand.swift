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

    func run() async throws {
        let configuration = Environment.configuration()
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
        do {
            outcome = .success(try await invoker.invoke(chunk, attempt: 1))
        } catch {
            outcome = .failure(error)
        }
        await group.triggerGracefulShutdown()
        _ = try? await running.value
        switch outcome {
        case .success(let outcomes):
            let result: JSONValue = ["function": .string(name), "outcomes": .array(outcomes.map(RuntimeRoutes.describe))]
            print(result.serializedString)
        case .failure(let error):
            throw CommandFailure("\(name) failed: \(error.description)")
        }
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
