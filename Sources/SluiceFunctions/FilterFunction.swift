import Sluice

/// Forwards events that have an id, drops those marked `"drop": true` (reason `filtered`) and
/// quarantines those that are not objects or have no id (reason `missing_id`).
public struct FilterFunction: PerEventFunction {
    public init() {}

    public func handle(_ event: Event, context: FunctionContext) throws -> Outcome {
        guard case .object(let object) = event.value, event.id != nil else {
            return .quarantine(reason: "missing_id", event: event)
        }
        if object["drop"]?.boolValue == true { return .drop(reason: "filtered") }
        return .forward(event)
    }
}
