import Sluice
import Yams

/// An ordered YAML value, written by ``YAMLDocument/render(_:)`` in block style with keys in
/// the order given, so that rendered manifests are byte-for-byte reproducible.
public indirect enum YAMLValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case list([YAMLValue])
    case map([(String, YAMLValue)])

    public static func == (lhs: YAMLValue, rhs: YAMLValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.bool(let a), .bool(let b)): a == b
        case (.list(let a), .list(let b)): a == b
        case (.map(let a), .map(let b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The value at `key` of a map.
    public subscript(key: String) -> YAMLValue? {
        guard case .map(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }
}

extension YAMLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: YAMLValue...) { self = .list(elements) }
    /// Dictionary literals keep their written order.
    public init(dictionaryLiteral elements: (String, YAMLValue)...) { self = .map(elements) }
}

/// Writes ``YAMLValue``s as YAML documents, with Yams (libyaml's emitter): a string that would
/// read back as another type (`"true"`, `"8080"`, `"1e3"`) is quoted, text with newlines is a
/// literal block, keys keep their order.
public enum YAMLDocument {
    /// One or more documents separated by `---`, each ending in a newline.
    public static func render(_ documents: [YAMLValue], header: String? = nil) -> String {
        var out = ""
        if let header {
            for line in header.split(separator: "\n", omittingEmptySubsequences: false) { out += "# \(line)\n" }
        }
        for (index, document) in documents.enumerated() {
            if index > 0 || header != nil { out += "---\n" }
            // Serializing a tree of plain values cannot fail: libyaml refuses only malformed event streams.
            out += (try? Yams.serialize(node: node(document), indent: 2, width: -1, allowUnicode: true)) ?? ""
        }
        return out
    }

    /// The Yams node of `value`.
    static func node(_ value: YAMLValue) -> Node {
        switch value {
        case .string(let text) where text.contains("\n"):
            return .scalar(.init(text, Tag(.str), .literal))
        case .string(let text):
            return .scalar(text.represented())
        case .int(let number):
            return .scalar(.init(String(number), Tag(.int)))
        case .bool(let flag):
            return .scalar(.init(flag ? "true" : "false", Tag(.bool)))
        case .list(let items):
            return .sequence(.init(items.map(node)))
        case .map(let pairs):
            return .mapping(.init(pairs.map { (Node.scalar($0.0.represented()), node($0.1)) }))
        }
    }
}
