/// One record flowing through a pipeline: a JSON object, the unit of validation and loading.
public struct Event: Sendable, Hashable {
    /// The event's JSON value (normally an object).
    public var value: JSONValue

    /// Wraps a JSON value as an event.
    public init(_ value: JSONValue) {
        self.value = value
    }

    /// The event's identity: `metadata.event_id` in the built-in shape, else a top-level `id`.
    /// `nil` when neither is a string.
    public var id: String? {
        if let id = value.value(at: Self.idPath)?.stringValue { return id }
        return value["id"]?.stringValue
    }

    private static let idPath = JSONPath("metadata.event_id")
}
