/// A Swift value that can be bound as a statement parameter, in PostgreSQL's text form.
public protocol PostgresEncodable: Sendable {
    /// The value as PostgreSQL reads it in text format.
    var postgresText: String { get }
}

/// A Swift value that can be read from a column in text format.
public protocol PostgresDecodable: Sendable {
    /// Decodes PostgreSQL's text form; `nil` when `postgresText` is not a value of this type.
    init?(postgresText: String)
    /// What SQL NULL decodes to; `nil` when NULL is not a value of this type.
    static var postgresNull: Self? { get }
}

extension PostgresDecodable {
    public static var postgresNull: Self? { nil }
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self }
    public init?(postgresText: String) { self = postgresText }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self ? "true" : "false" }
    public init?(postgresText: String) {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: return nil
        }
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public init?(postgresText: String) {
        guard let value = Wrapped(postgresText: postgresText) else { return nil }
        self = .some(value)
    }
    public static var postgresNull: Self? { .some(.none) }
}

/// An element of an array parameter: its text, or `nil` for NULL.
public protocol PostgresArrayElement: Sendable {
    var postgresArrayItem: String? { get }
}

extension PostgresArrayElement where Self: PostgresEncodable {
    public var postgresArrayItem: String? { postgresText }
}

extension String: PostgresArrayElement {}
extension Int: PostgresArrayElement {}
extension Int64: PostgresArrayElement {}
extension Int32: PostgresArrayElement {}
extension Double: PostgresArrayElement {}
extension Bool: PostgresArrayElement {}

extension Optional: PostgresArrayElement where Wrapped: PostgresEncodable {
    public var postgresArrayItem: String? { self?.postgresText }
}

/// An array is bound as one parameter, in the text form of a one-dimensional array
/// (`{"a","b",NULL}`); the statement casts it (`\(ids)::uuid[]`).
extension Array: PostgresEncodable where Element: PostgresArrayElement {
    public var postgresText: String { PostgresArray.literal(map(\.postgresArrayItem)) }
}

/// An array column decodes element by element; a NULL element fails unless `Element` is optional.
extension Array: PostgresDecodable where Element: PostgresDecodable {
    public init?(postgresText: String) {
        guard let items = PostgresArray.parseItems(postgresText) else { return nil }
        var values: [Element] = []
        values.reserveCapacity(items.count)
        for item in items {
            if let item {
                guard let value = Element(postgresText: item) else { return nil }
                values.append(value)
            } else {
                guard let null = Element.postgresNull else { return nil }
                values.append(null)
            }
        }
        self = values
    }
}

/// PostgreSQL's text form of a one-dimensional array.
public enum PostgresArray {
    /// `{"a","b",NULL}`: every element quoted with `"` and `\` escaped, `nil` as NULL.
    public static func literal(_ items: [String?]) -> String {
        var text: [UInt8] = [UInt8(ascii: "{")]
        text.reserveCapacity(items.reduce(2) { $0 + ($1?.utf8.count ?? 4) + 4 })
        for (index, item) in items.enumerated() {
            if index > 0 { text.append(UInt8(ascii: ",")) }
            guard let item else { text += Array<UInt8>("NULL".utf8); continue }
            text.append(UInt8(ascii: "\""))
            for byte in item.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { text.append(UInt8(ascii: "\\")) }
                text.append(byte)
            }
            text.append(UInt8(ascii: "\""))
        }
        text.append(UInt8(ascii: "}"))
        return String(decoding: text, as: UTF8.self)
    }

    /// The elements of the text form PostgreSQL answers for a one-dimensional array, `nil`
    /// for an unquoted NULL; `nil` when `text` is not in that form.
    public static func parseItems(_ text: String) -> [String?]? {
        var chars = Array<Unicode.Scalar>(text.unicodeScalars)
        guard chars.first == "{", chars.last == "}" else { return nil }
        chars = Array<Unicode.Scalar>(chars.dropFirst().dropLast())
        var items: [String?] = []
        var index = 0
        while index < chars.count {
            var item = String.UnicodeScalarView()
            if chars[index] == "\"" {
                index += 1
                while index < chars.count, chars[index] != "\"" {
                    if chars[index] == "\\", index + 1 < chars.count { index += 1 }
                    item.append(chars[index])
                    index += 1
                }
                index += 1  // closing quote
                items.append(String(item))
            } else {
                while index < chars.count, chars[index] != "," { item.append(chars[index]); index += 1 }
                let bare = String(item)
                items.append(bare == "NULL" ? nil : bare)
            }
            index += 1  // comma
        }
        return items
    }
}
