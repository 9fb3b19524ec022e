/// Why bytes are not one JSON value, and where. The description names the code and the byte
/// offset only, never the input (it may be personal data).
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable {
        case unexpectedEnd = "json_unexpected_end"
        case unexpectedCharacter = "json_unexpected_character"
        case invalidNumber = "json_invalid_number"
        case invalidString = "json_invalid_string"
        case invalidEscape = "json_invalid_escape"
        case invalidUTF8 = "json_invalid_utf8"
        case tooDeep = "json_too_deep"
        case trailingData = "json_trailing_data"
    }

    public var code: Code
    /// The 0-based byte offset of the problem.
    public var offset: Int

    public init(_ code: Code, offset: Int) {
        self.code = code
        self.offset = offset
    }

    public var description: String { "\(code.rawValue) at byte \(offset)" }
}
