import Sluice

/// Checks an event against the built-in event shape of DESIGN.md and its freshness.
///
/// Required: `metadata` (object) with `event_id` (non-empty string) and `timestamp` (RFC 3339
/// date-time); `user` (object) with `id` (string); `payload` (object) with `event_type`
/// (string). Optional members, when present, must have their type: `metadata.version`,
/// `metadata.source`, `user.session_id` (strings), `user.attributes`, `context`,
/// `context.location`, `payload.properties`, `payload.custom_data` (objects).
public struct EventShapeValidator: Sendable {
    /// What the validator decided.
    public enum Verdict: Sendable, Equatable {
        /// Well-formed and fresh; `timestamp` in Unix milliseconds.
        case valid(eventID: String, timestamp: Int64)
        /// Malformed: quarantine with `reason` (a stable code) and the `field` at fault.
        case malformed(reason: String, field: String)
        /// Older than the freshness window: rejected as stale.
        case stale(eventID: String)
    }

    /// Events older than this are stale.
    public var maxAge: Duration
    /// Events further than this in the future are malformed (`future_timestamp`).
    public var maxFutureSkew: Duration

    /// Defaults: 24 h of age, 5 minutes of future skew.
    public init(maxAge: Duration = .seconds(24 * 3600), maxFutureSkew: Duration = .seconds(300)) {
        self.maxAge = maxAge
        self.maxFutureSkew = maxFutureSkew
    }

    /// Judges `event` at the instant `nowMilliseconds` (Unix milliseconds; inject the clock).
    public func check(_ event: JSONValue, nowMilliseconds: Int64) -> Verdict {
        guard case .object(let root) = event else { return .malformed(reason: "wrong_type", field: "") }
        guard case .object(let metadata)? = root["metadata"] else { return missingOrWrong(root["metadata"], "metadata") }
        guard case .string(let eventID)? = metadata["event_id"], !eventID.isEmpty else {
            return missingOrWrong(metadata["event_id"], "metadata.event_id", emptyIsMissing: true)
        }
        guard case .string(let time)? = metadata["timestamp"] else { return missingOrWrong(metadata["timestamp"], "metadata.timestamp") }
        guard let timestamp = Timestamp.milliseconds(time) else { return .malformed(reason: "invalid_timestamp", field: "metadata.timestamp") }
        for key in ["version", "source"] {
            if let value = metadata[key], !value.isString { return .malformed(reason: "wrong_type", field: "metadata.\(key)") }
        }
        guard case .object(let user)? = root["user"] else { return missingOrWrong(root["user"], "user") }
        guard case .string? = user["id"] else { return missingOrWrong(user["id"], "user.id") }
        if let value = user["session_id"], !value.isString { return .malformed(reason: "wrong_type", field: "user.session_id") }
        if let value = user["attributes"], !value.isObject { return .malformed(reason: "wrong_type", field: "user.attributes") }
        if let context = root["context"] {
            guard case .object(let object) = context else { return .malformed(reason: "wrong_type", field: "context") }
            if let location = object["location"], !location.isObject { return .malformed(reason: "wrong_type", field: "context.location") }
        }
        guard case .object(let payload)? = root["payload"] else { return missingOrWrong(root["payload"], "payload") }
        guard case .string? = payload["event_type"] else { return missingOrWrong(payload["event_type"], "payload.event_type") }
        for key in ["properties", "custom_data"] {
            if let value = payload[key], !value.isObject { return .malformed(reason: "wrong_type", field: "payload.\(key)") }
        }
        if timestamp > nowMilliseconds + maxFutureSkew.milliseconds {
            return .malformed(reason: "future_timestamp", field: "metadata.timestamp")
        }
        if timestamp < nowMilliseconds - maxAge.milliseconds { return .stale(eventID: eventID) }
        return .valid(eventID: eventID, timestamp: timestamp)
    }

    private func missingOrWrong(_ value: JSONValue?, _ field: String, emptyIsMissing: Bool = false) -> Verdict {
        if value == nil || value == .null || (emptyIsMissing && value == .string("")) {
            return .malformed(reason: "missing_field", field: field)
        }
        return .malformed(reason: "wrong_type", field: field)
    }
}

extension JSONValue {
    var isString: Bool { if case .string = self { true } else { false } }
    var isObject: Bool { if case .object = self { true } else { false } }
}
