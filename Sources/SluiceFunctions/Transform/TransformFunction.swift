import Sluice

/// Turns each event into a warehouse row with the manifest's `config.rules` (see
/// ``TransformRule``) and the plugins registered in the process. An event a rule cannot
/// transform (a failed cast, a failing plugin) is quarantined with the rule's code as reason.
public struct TransformFunction: PerEventFunction {
    let program: TransformProgram

    public init(setup: FunctionSetup) throws {
        program = try TransformProgram(config: setup.manifest.config, file: setup.manifest.file,
                                       plugins: setup.resources.get(TransformPluginRegistry.self) ?? TransformPluginRegistry())
    }

    public func handle(_ event: Event, context: FunctionContext) throws -> Outcome {
        do {
            return .forward(Event(try program.apply(to: event.value)))
        } catch {
            return .quarantine(reason: error.code, event: event)
        }
    }
}
