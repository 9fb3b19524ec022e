import Sluice

/// Appends the function's name to each event's `stages` array and forwards it: a minimal
/// transforming stage that makes the path of every event visible at the sink.
///
/// `config.delay_ms` (default 0) sleeps that long per chunk, to model a slow stage.
public struct StampFunction: EventFunction {
    let name: String
    let delay: Duration

    public init(setup: PipelineSetup) throws {
        name = setup.manifest.name
        let ms = setup.manifest.config["delay_ms"]?.intValue ?? 0
        guard ms >= 0 else {
            throw ManifestError(.badValue, file: setup.manifest.file, key: "config.delay_ms", message: "must not be negative")
        }
        delay = .milliseconds(ms)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        if delay > .zero { try await Task.sleep(for: delay) }
        return chunk.events.map { event in
            guard case .object(var object) = event.value else { return .forward(event) }
            var stages = object["stages"]?.arrayValue ?? []
            stages.append(.string(name))
            object["stages"] = .array(stages)
            return .forward(Event(.object(object)))
        }
    }
}
