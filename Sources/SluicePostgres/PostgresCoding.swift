/// A Swift value that can be bound as a statement parameter, in PostgreSQL's text form.
public protocol PostgresEncodable: Sendable {
    /// The value as PostgreSQL reads it in text format.
    var postgresText: String { get }
}

/// Why a column's text is not a value of the type asked for.
public enum PostgresColumnFailure: Error, Sendable {
    /// The column is NULL and the type has no NULL.
    case null
    /// The text is not a value of the type.
    case malformed
}

/// A Swift value that can be read from a column in text format.
///
/// Each type implements the requirement itself (no default): decoding runs per column of every
/// row, and a concrete witness needs no generic metadata looked up at run time.
public protocol PostgresDecodable: Sendable {
    /// Decodes PostgreSQL's text form of a column, `nil` for SQL NULL.
    init(postgresColumn text: String?) throws(PostgresColumnFailure)
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        self = text
    }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let value = Int(text) else { throw .malformed }
        self = value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let value = Int64(text) else { throw .malformed }
        self = value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let value = Int32(text) else { throw .malformed }
        self = value
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { String(self) }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let value = Double(text) else { throw .malformed }
        self = value
    }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self ? "true" : "false" }
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        switch text {
        case nil: throw .null
        case "t"?, "true"?: self = true
        case "f"?, "false"?: self = false
        default: throw .malformed
        }
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { self = .none; return }
        self = .some(try Wrapped(postgresColumn: text))
    }
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
    public init(postgresColumn text: String?) throws(PostgresColumnFailure) {
        guard let text else { throw .null }
        guard let items = PostgresArray.parseItems(text) else { throw .malformed }
        var values: [Element] = []
        values.reserveCapacity(items.count)
        for item in items {
            do {
                values.append(try Element(postgresColumn: item))
            } catch {
                throw .malformed
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
