import Sluice

/// Turns each event into a warehouse row with the manifest's `config.rules` (see
/// ``TransformRule``) and the plugins registered in the process. An event a rule cannot
/// transform (a failed cast, a failing plugin) is quarantined with the rule's code as reason.
public struct TransformFunction: PerEventFunction {
    let program: TransformProgram

    public init(manifest: Manifest, plugins: TransformPluginRegistry = TransformPluginRegistry()) throws {
        program = try TransformProgram(config: manifest.config, file: manifest.file, plugins: plugins)
    }

    public func handle(_ event: Event, context: FunctionContext) throws -> Outcome {
        do {
            return .forward(Event(try program.apply(to: event.value)))
        } catch {
            return .quarantine(reason: error.code, event: event)
        }
    }
}
