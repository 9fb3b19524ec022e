import Foundation
import Logging
@_exported import SluiceRuntime

/// Runs a function in process, without Redis, PostgreSQL or a server: what a unit test of a
/// pipeline step needs. The function sees what it sees under Sluice — a chunk of events, a
/// context with an attempt and a deadline — and answers the same outcomes.
///
/// ```swift
/// let tester = try FunctionTester(FraudScore.self, config: ["limit": 1000])
/// let outcomes = try await tester.run([["order_id": "o-1", "amount": 1200]])
/// #expect(outcomes == [.drop(reason: "over_limit")])
/// ```
public struct FunctionTester: Sendable {
    public let function: any EventFunction
    public let name: String

    /// A tester of any event function.
    public init(_ function: any EventFunction, name: String = "function") {
        self.function = function
        self.name = name
    }

    /// A tester of a ``CodableFunction`` built with `config` (a manifest's `config`).
    public init<F: CodableFunction>(_ type: F.Type, config: JSONValue = [:], name: String = "function") throws {
        self.init(try CodableEventFunction<F>(config: config), name: name)
    }

    /// The outcomes of one chunk of `events`, in order.
    public func run(_ events: [JSONValue], attempt: Int = 1, dataset: String = "events",
                    deadline: Duration = .seconds(30)) async throws -> [Outcome] {
        let chunk = Chunk(id: "0-1", jobID: "test-job", traceID: nil, events: events.map(Event.init),
                          dataset: DatasetReference(name: dataset, version: 1))
        let context = FunctionContext(functionName: name, logger: Logger(label: "sluice.testing"), chunk: chunk,
                                      attempt: attempt, deadline: .now + deadline)
        let outcomes = try await function.handle(chunk, context: context)
        guard outcomes.count == events.count else {
            throw FunctionError.permanent("bad_outcomes", "\(outcomes.count) outcomes for \(events.count) events")
        }
        return outcomes
    }

    /// The outcomes of one chunk of `inputs`, each encoded as an event first.
    public func run<Input: Encodable>(_ inputs: [Input], attempt: Int = 1) async throws -> [Outcome] {
        let events = try inputs.map { try JSONParser().parse(Array(CodableEvents.encoder.encode($0))) }
        return try await run(events, attempt: attempt)
    }

    /// The events forwarded among `outcomes`, decoded as `type` (nil for the others).
    public static func forwarded<T: Decodable>(_ outcomes: [Outcome], as type: T.Type) throws -> [T?] {
        try outcomes.map { outcome in
            guard case .forward(let event, _) = outcome else { return nil }
            return try CodableEvents.decoder.decode(T.self, from: Data(event.value.serializedBytes))
        }
    }
}
