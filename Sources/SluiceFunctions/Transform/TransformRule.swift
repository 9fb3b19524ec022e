import Sluice

/// A declarative step of the transform stage, read from a manifest's `config.rules`:
///
/// ```yaml
/// rules:
///   - rename: {from: metadata.event_id, to: event_id}
///   - cast: {field: payload.properties.value, to: number}     # string|integer|number|boolean
///   - default: {field: context.location.region, value: unknown}
///   - drop: {field: user.attributes}
///   - lowercase: {field: payload.event_type}
///   - concat: {fields: [context.location.country, context.location.region], separator: "-", to: location}
///   - hash: {field: user.session_id, to: session_hash}       # SHA-256, hex
///   - plugin: {name: my-plugin}                                # Swift code from the plugin registry
/// ```
/// Fields are dot-separated paths into the event, split once when the manifest is read.
public enum TransformRule: Sendable, Equatable {
    case rename(from: JSONPath, to: JSONPath)
    case cast(field: JSONPath, to: CastType)
    case defaultValue(field: JSONPath, value: JSONValue)
    case drop(field: JSONPath)
    case lowercase(field: JSONPath)
    case concat(fields: [JSONPath], separator: String, to: JSONPath)
    case hash(field: JSONPath, to: JSONPath)
    case plugin(name: String)

    /// The types `cast` converts to.
    public enum CastType: String, Sendable, Equatable {
        case string, integer, number, boolean
    }
}

/// A rule that could not be applied to one event; the transform quarantines the event with
/// `code` as the reason.
public struct TransformFailure: Error, Sendable, Equatable {
    /// `cast_failed`, `plugin_failed`.
    public var code: String
    /// The path at fault (or the plugin's name).
    public var field: String

    public init(code: String, field: String) {
        self.code = code
        self.field = field
    }
}

/// Transforms that rules cannot express, in Swift, registered by name.
public protocol TransformPlugin: Sendable {
    /// Answers the transformed event.
    /// - Throws: anything, to quarantine the event as `plugin_failed`.
    func transform(_ event: JSONValue) throws -> JSONValue
}

/// The transform plugins a process knows, by name.
public struct TransformPluginRegistry: Sendable {
    private var plugins: [String: any TransformPlugin] = [:]

    public init() {}

    /// Registers (or replaces) the plugin `name`.
    public mutating func register(_ name: String, _ plugin: any TransformPlugin) {
        plugins[name] = plugin
    }

    public subscript(name: String) -> (any TransformPlugin)? { plugins[name] }
}

/// An ordered list of rules, checked once when the manifest is read.
public struct TransformProgram: Sendable {
    public let rules: [TransformRule]
    let plugins: TransformPluginRegistry

    /// Reads `config.rules` of a manifest.
    /// - Throws: ``ManifestError`` naming the rule (`config.rules[2].cast.to`) for unknown rule
    ///   kinds, missing or extra keys, unknown types and unknown plugins.
    public init(config: JSONValue, file: String, plugins: TransformPluginRegistry = TransformPluginRegistry()) throws {
        self.plugins = plugins
        guard let list = config["rules"] else {
            rules = []
            return
        }
        guard case .array(let items) = list else {
            throw ManifestError(.badValue, file: file, key: "config.rules", message: "must be a list of rules")
        }
        var rules: [TransformRule] = []
        for (index, item) in items.enumerated() {
            let at = "config.rules[\(index)]"
            guard case .object(let object) = item, object.count == 1, let (kind, body) = object.first(where: { _ in true }) else {
                throw ManifestError(.badValue, file: file, key: at, message: "must be one `kind: {…}` mapping")
            }
            let reader = RuleReader(file: file, at: "\(at).\(kind)", body: body)
            switch kind {
            case "rename":
                try reader.only(["from", "to"])
                rules.append(.rename(from: try reader.path("from"), to: try reader.path("to")))
            case "cast":
                try reader.only(["field", "to"])
                let type = try reader.string("to")
                guard let cast = TransformRule.CastType(rawValue: type) else {
                    throw ManifestError(.badValue, file: file, key: "\(at).cast.to", message: "must be string, integer, number or boolean")
                }
                rules.append(.cast(field: try reader.path("field"), to: cast))
            case "default":
                try reader.only(["field", "value"])
                guard let value = body["value"] else {
                    throw ManifestError(.missingField, file: file, key: "\(at).default.value", message: "is required")
                }
                rules.append(.defaultValue(field: try reader.path("field"), value: value))
            case "drop":
                try reader.only(["field"])
                rules.append(.drop(field: try reader.path("field")))
            case "lowercase":
                try reader.only(["field"])
                rules.append(.lowercase(field: try reader.path("field")))
            case "concat":
                try reader.only(["fields", "separator", "to"])
                guard case .array(let fields)? = body["fields"], !fields.isEmpty,
                      let paths = Optional(fields.compactMap(\.stringValue)), paths.count == fields.count
                else {
                    throw ManifestError(.badValue, file: file, key: "\(at).concat.fields", message: "must be a non-empty list of paths")
                }
                let separator = body["separator"] == nil ? "" : try reader.string("separator")
                rules.append(.concat(fields: paths.map(JSONPath.init), separator: separator, to: try reader.path("to")))
            case "hash":
                try reader.only(["field", "to"])
                let field = try reader.path("field")
                rules.append(.hash(field: field, to: body["to"] == nil ? field : try reader.path("to")))
            case "plugin":
                try reader.only(["name"])
                let name = try reader.string("name")
                guard plugins[name] != nil else {
                    throw ManifestError(.badValue, file: file, key: "\(at).plugin.name", message: "no transform plugin named '\(name)' is registered")
                }
                rules.append(.plugin(name: name))
            default:
                throw ManifestError(.unknownKey, file: file, key: "\(at).\(kind)",
                                    message: "unknown rule (known: cast, concat, default, drop, hash, lowercase, plugin, rename)")
            }
        }
        self.rules = rules
    }

    /// Applies every rule in order.
    /// - Throws: ``TransformFailure`` when a cast or a plugin fails for this event.
    public func apply(to event: JSONValue) throws(TransformFailure) -> JSONValue {
        var value = event
        for rule in rules {
            switch rule {
            case .rename(let from, let to):
                guard let moved = value.value(at: from) else { continue }
                value.setValue(nil, at: from)
                value.setValue(moved, at: to)
            case .cast(let field, let type):
                guard let current = value.value(at: field), current != .null else { continue }
                guard let cast = Self.cast(current, to: type) else { throw TransformFailure(code: "cast_failed", field: field.description) }
                value.setValue(cast, at: field)
            case .defaultValue(let field, let fallback):
                if value.value(at: field) == nil || value.value(at: field) == .null { value.setValue(fallback, at: field) }
            case .drop(let field):
                value.setValue(nil, at: field)
            case .lowercase(let field):
                if case .string(let text)? = value.value(at: field) { value.setValue(.string(text.lowercased()), at: field) }
            case .concat(let fields, let separator, let to):
                let parts = fields.compactMap { value.value(at: $0) }.compactMap(Self.text)
                value.setValue(parts.isEmpty ? .null : .string(parts.joined(separator: separator)), at: to)
            case .hash(let field, let to):
                guard let current = value.value(at: field), current != .null, let text = Self.text(current) else { continue }
                value.setValue(.string(SHA256.hex(Array(text.utf8))), at: to)
            case .plugin(let name):
                do {
                    value = try plugins[name]!.transform(value)
                } catch {
                    throw TransformFailure(code: "plugin_failed", field: name)
                }
            }
        }
        return value
    }

    static func text(_ value: JSONValue) -> String? {
        switch value {
        case .string(let s): s
        case .int(let i): String(i)
        case .double(let d): d.description
        case .bool(let b): b ? "true" : "false"
        default: nil
        }
    }

    static func cast(_ value: JSONValue, to type: TransformRule.CastType) -> JSONValue? {
        switch type {
        case .string:
            return text(value).map(JSONValue.string)
        case .integer:
            if let i = value.intValue { return .int(i) }
            if case .string(let s) = value, let i = Int64(s.trimmingSpaces()) { return .int(i) }
            return nil
        case .number:
            if case .int = value { return value }
            if case .double = value { return value }
            if case .string(let s) = value, let d = Double(s.trimmingSpaces()), d.isFinite { return .double(d) }
            return nil
        case .boolean:
            if case .bool = value { return value }
            switch text(value)?.lowercased() {
            case "true", "1", "yes": return .bool(true)
            case "false", "0", "no": return .bool(false)
            default: return nil
            }
        }
    }
}

private struct RuleReader {
    let file: String
    let at: String
    let body: JSONValue

    func only(_ allowed: Set<String>) throws {
        guard case .object(let object) = body else {
            throw ManifestError(.badValue, file: file, key: at, message: "must be a mapping")
        }
        for key in object.keys where !allowed.contains(key) {
            throw ManifestError(.unknownKey, file: file, key: "\(at).\(key)", message: "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    func string(_ key: String) throws -> String {
        guard let value = body[key] else { throw ManifestError(.missingField, file: file, key: "\(at).\(key)", message: "is required") }
        guard case .string(let text) = value else { throw ManifestError(.badValue, file: file, key: "\(at).\(key)", message: "must be a string") }
        return text
    }

    func path(_ key: String) throws -> JSONPath {
        let text = try string(key)
        guard !text.isEmpty, !text.split(separator: ".", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
            throw ManifestError(.badValue, file: file, key: "\(at).\(key)", message: "is not a dotted path")
        }
        return JSONPath(text)
    }
}
