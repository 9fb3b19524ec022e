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

/// Writes ``YAMLValue``s as YAML documents.
public enum YAMLDocument {
    /// One or more documents separated by `---`, each ending in a newline.
    public static func render(_ documents: [YAMLValue], header: String? = nil) -> String {
        var out = ""
        if let header {
            for line in header.split(separator: "\n", omittingEmptySubsequences: false) { out += "# \(line)\n" }
        }
        for (index, document) in documents.enumerated() {
            if index > 0 || header != nil { out += "---\n" }
            write(document, indent: 0, into: &out)
        }
        return out
    }

    private static func write(_ value: YAMLValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .map(let pairs):
            if pairs.isEmpty { out += "\(pad){}\n"; return }
            for (key, item) in pairs {
                out += "\(pad)\(scalar(key)):"
                inline(item, indent: indent, into: &out)
            }
        case .list(let items):
            if items.isEmpty { out += "\(pad)[]\n"; return }
            for item in items { listItem(item, indent: indent, into: &out) }
        default:
            out += pad
            inline(value, indent: indent, into: &out, leadingSpace: false)
        }
    }

    /// Writes what follows `key:` (or `- `).
    private static func inline(_ value: YAMLValue, indent: Int, into out: inout String, leadingSpace: Bool = true) {
        let space = leadingSpace ? " " : ""
        switch value {
        case .string(let text) where text.contains("\n"):
            // Literal block: the text's lines, indented; a trailing newline kept ("|") or not ("|-").
            out += "\(space)\(text.hasSuffix("\n") ? "|" : "|-")\n"
            let body = text.hasSuffix("\n") ? String(text.dropLast()) : text
            let pad = String(repeating: " ", count: indent + 2)
            for line in body.split(separator: "\n", omittingEmptySubsequences: false) {
                out += line.isEmpty ? "\n" : "\(pad)\(line)\n"
            }
        case .string(let text): out += "\(space)\(scalar(text))\n"
        case .int(let number): out += "\(space)\(number)\n"
        case .bool(let flag): out += "\(space)\(flag)\n"
        case .map(let pairs) where pairs.isEmpty: out += "\(space){}\n"
        case .list(let items) where items.isEmpty: out += "\(space)[]\n"
        case .map:
            out += "\n"
            write(value, indent: indent + 2, into: &out)
        case .list:
            out += "\n"
            write(value, indent: indent, into: &out)
        }
    }

    private static func listItem(_ value: YAMLValue, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case .map(let pairs) where !pairs.isEmpty:
            // The first key on the dash's line, the rest below it.
            var first = true
            for (key, item) in pairs {
                out += first ? "\(pad)- \(scalar(key)):" : "\(pad)  \(scalar(key)):"
                inline(item, indent: indent + 2, into: &out)
                first = false
            }
        case .list(let items) where !items.isEmpty:
            out += "\(pad)-\n"
            write(value, indent: indent + 2, into: &out)
        default:
            out += "\(pad)-"
            inline(value, indent: indent + 2, into: &out)
        }
    }

    /// A string as a plain scalar when YAML would read it back as the same string, else
    /// double-quoted with JSON escapes.
    static func scalar(_ text: String) -> String {
        plainSafe(text) ? text : quoted(text)
    }

    private static let reserved: Set<String> = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "",
    ]

    private static func plainSafe(_ text: String) -> Bool {
        guard !reserved.contains(text.lowercased()), let first = text.unicodeScalars.first else { return false }
        // Anything that could read as a number (1, 1.5, 1e3, 0x1F, .5, -1) is quoted.
        guard first.properties.isAlphabetic || first == "/" || first == "_" else { return false }
        if text.hasSuffix(":") { return false }
        for scalar in text.unicodeScalars {
            guard scalar.isASCII else { return false }
            let c = Character(scalar)
            guard c.isLetter || c.isNumber || "-_./:".contains(c) else { return false }
        }
        // ": " never occurs (no spaces allowed); "key:value" is a plain scalar.
        return true
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
