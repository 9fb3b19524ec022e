import Foundation
import Sluice

/// A check of one field, read from validate's `config.rules`, applied after the event shape:
///
/// ```yaml
/// rules:
///   - {field: payload.event_type, pattern: "^[A-Za-z][A-Za-z0-9_.:-]*$"}
///   - {field: user.attributes.plan, type: string, required: true, one_of: [free, pro]}
/// ```
/// `type` is one of `string`, `integer`, `number`, `boolean`, `object`, `array`. A missing
/// required field is quarantined as `missing_field`, a field of another type as `wrong_type`,
/// a string that does not match `pattern` or is not in `one_of` as `invalid_value`.
public struct FieldRule: Sendable {
    public enum ValueType: String, Sendable { case string, integer, number, boolean, object, array }

    public var field: String {
        didSet { path = JSONPath(field) }
    }
    private var path: JSONPath
    public var required: Bool
    public var type: ValueType?
    public var oneOf: Set<String>?
    let pattern: NSRegularExpression?

    /// Reads `config.rules` (absent: no rules).
    public static func rules(from config: JSONValue, file: String) throws -> [FieldRule] {
        guard let value = config["rules"] else { return [] }
        guard case .array(let items) = value else {
            throw ManifestError(.badValue, file: file, key: "config.rules", message: "must be a list of {field, type, required, pattern, one_of}")
        }
        return try items.enumerated().map { index, item in
            let key = "config.rules[\(index)]"
            guard case .object(let object) = item, case .string(let field)? = object["field"], !field.isEmpty else {
                throw ManifestError(.badValue, file: file, key: key, message: "needs a 'field' (a dotted path)")
            }
            for name in object.keys where !["field", "type", "required", "pattern", "one_of"].contains(name) {
                throw ManifestError(.unknownKey, file: file, key: "\(key).\(name)", message: "unknown key (allowed: field, one_of, pattern, required, type)")
            }
            var type: ValueType?
            if let raw = object["type"] {
                guard case .string(let name) = raw, let parsed = ValueType(rawValue: name) else {
                    throw ManifestError(.badValue, file: file, key: "\(key).type", message: "must be string, integer, number, boolean, object or array")
                }
                type = parsed
            }
            var required = false
            if let raw = object["required"] {
                guard case .bool(let flag) = raw else { throw ManifestError(.badValue, file: file, key: "\(key).required", message: "must be true or false") }
                required = flag
            }
            var pattern: NSRegularExpression?
            if let raw = object["pattern"] {
                guard case .string(let text) = raw, let regex = try? NSRegularExpression(pattern: text) else {
                    throw ManifestError(.badValue, file: file, key: "\(key).pattern", message: "is not a valid regular expression")
                }
                pattern = regex
            }
            var oneOf: Set<String>?
            if let raw = object["one_of"] {
                guard case .array(let values) = raw else { throw ManifestError(.badValue, file: file, key: "\(key).one_of", message: "must be a list") }
                oneOf = Set(values.compactMap { value -> String? in
                    switch value {
                    case .string(let s): s
                    case .null: nil
                    default: value.serializedString
                    }
                })
            }
            return FieldRule(field: field, path: JSONPath(field), required: required, type: type, oneOf: oneOf, pattern: pattern)
        }
    }

    /// The reason code when `event` breaks the rule, else nil.
    public func violation(in event: JSONValue) -> String? {
        guard let value = event.value(at: path), value != .null else { return required ? "missing_field" : nil }
        if let type, !Self.matches(value, type) { return "wrong_type" }
        if pattern != nil || oneOf != nil {
            guard case .string(let text) = value else { return "wrong_type" }
            if let oneOf, !oneOf.contains(text) { return "invalid_value" }
            if let pattern, pattern.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil { return "invalid_value" }
        }
        return nil
    }

    static func matches(_ value: JSONValue, _ type: ValueType) -> Bool {
        switch (value, type) {
        case (.string, .string), (.int, .integer), (.int, .number), (.double, .number), (.bool, .boolean),
             (.object, .object), (.array, .array): true
        default: false
        }
    }
}
