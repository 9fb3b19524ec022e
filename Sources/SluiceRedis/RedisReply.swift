/// A reply from Redis, copied out of hiredis' memory.
public enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RedisReply])
    case null
    case error(String)

    /// The reply as text, for bulk strings and status replies.
    public var text: String? {
        switch self {
        case .string(let bytes): String(decoding: bytes, as: UTF8.self)
        case .status(let s): s
        case .integer(let i): String(i)
        default: nil
        }
    }

    /// The bytes of a bulk string.
    public var bytes: [UInt8]? {
        if case .string(let b) = self { return b }
        return nil
    }

    /// The integer of an integer reply (or a bulk string holding one).
    public var int: Int64? {
        switch self {
        case .integer(let i): i
        case .string(let b): Int64(String(decoding: b, as: UTF8.self))
        default: nil
        }
    }

    /// The elements of an array reply; `nil` for anything else (a NIL reply included).
    public var array: [RedisReply]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// Whether this is the NIL reply.
    public var isNull: Bool { self == .null }
}

/// A command argument: bytes, built from strings, integers or byte arrays.
public struct RedisArgument: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    /// The argument's bytes.
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }
    public init<I: BinaryInteger>(_ value: I) { self.bytes = Array(String(value).utf8) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(integerLiteral value: Int) { self.init(value) }
}

/// A failure talking to Redis.
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable {
        /// The server cannot be reached or the connection broke: retry later.
        case unavailable = "redis_unavailable"
        /// The server answered the command with an error.
        case command = "redis_command_error"
        /// The reply did not have the expected shape.
        case unexpectedReply = "redis_unexpected_reply"
        /// The URL is not a valid `redis://` URL.
        case badURL = "redis_bad_url"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
