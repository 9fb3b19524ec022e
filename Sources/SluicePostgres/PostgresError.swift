/// A failure talking to PostgreSQL.
public struct PostgresError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable {
        /// The server cannot be reached or the connection broke: retry later.
        case unavailable = "postgres_unavailable"
        /// The server refused the statement.
        case statement = "postgres_statement_error"
        /// A COPY failed.
        case copy = "postgres_copy_error"
        /// A column did not decode as the type asked for.
        case decoding = "postgres_decoding_error"
    }

    public var code: Code
    /// The SQLSTATE of a refused statement (`23505` …), when known.
    public var sqlState: String?
    /// The server's primary message. PostgreSQL's messages name objects and may quote values
    /// of a failing row, so callers log `code` and `sqlState`, not this, where data is personal.
    public var message: String

    public init(_ code: Code, sqlState: String? = nil, _ message: String) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
    }

    public var description: String {
        "\(code.rawValue)\(sqlState.map { " [\($0)]" } ?? ""): \(message)"
    }
}
