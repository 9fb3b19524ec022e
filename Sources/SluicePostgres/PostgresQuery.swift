import Foundation

/// A statement whose interpolated values are bound parameters, never SQL text.
///
/// ```swift
/// let rows = try await pool.query("SELECT total FROM orders WHERE id = \(id)::uuid")
/// ```
///
/// sends `SELECT total FROM orders WHERE id = $1::uuid` with `id` as parameter 1. What may be
/// written into the statement itself is only what the type allows:
/// - a value that is ``PostgresEncodable`` (or an optional of one): bound as `$n`;
/// - another `PostgresQuery`: a fragment built the same way, its parameters renumbered;
/// - `identifier:`: a name, double-quoted with `"` doubled (a NUL byte fails the statement).
///
/// So a `String` can never become SQL text by interpolation; fixed fragments are
/// `PostgresQuery` values written as literals.
public struct PostgresQuery: Sendable, Hashable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The statement's text around its parameters: `text.count == binds.count + 1`, and
    /// parameter `n` stands between `text[n - 1]` and `text[n]`.
    private var text: [String]
    /// The parameters in text form (`nil` for SQL NULL).
    public private(set) var binds: [String?]
    /// Why the statement must not run (an invalid identifier), checked before it is sent.
    public private(set) var invalid: String?

    public init(stringLiteral value: String) {
        text = [value]
        binds = []
        invalid = nil
    }

    public init(stringInterpolation: StringInterpolation) {
        self = stringInterpolation.query
    }

    /// The statement with `$1`, `$2`, … in place of its parameters.
    public var sql: String {
        var sql = text[0]
        for index in 1..<text.count {
            sql += "$\(index)"
            sql += text[index]
        }
        return sql
    }

    /// The statement's text; parameters appear as `$n`, never their values.
    public var description: String { sql }

    /// Appends `other`, renumbering its parameters after this statement's.
    public mutating func append(_ other: PostgresQuery) {
        text[text.count - 1] += other.text[0]
        text.append(contentsOf: other.text.dropFirst())
        binds.append(contentsOf: other.binds)
        if invalid == nil { invalid = other.invalid }
    }

    /// `lhs` followed by `rhs`.
    public static func + (lhs: PostgresQuery, rhs: PostgresQuery) -> PostgresQuery {
        var joined = lhs
        joined.append(rhs)
        return joined
    }

    /// Builds a statement; see ``PostgresQuery``.
    public struct StringInterpolation: StringInterpolationProtocol, Sendable {
        var query = PostgresQuery(stringLiteral: "")

        public init(literalCapacity: Int, interpolationCount: Int) {}

        public mutating func appendLiteral(_ literal: String) {
            query.text[query.text.count - 1] += literal
        }

        /// Binds `value` as the next parameter.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            bind(value.postgresText)
        }

        /// Binds `value` as the next parameter, SQL NULL when it is `nil`.
        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?) {
            bind(value?.postgresText)
        }

        /// Writes a fragment built as a `PostgresQuery`, its parameters renumbered.
        public mutating func appendInterpolation(_ fragment: PostgresQuery) {
            query.append(fragment)
        }

        /// Writes `name` as a quoted identifier (`"name"`, with `"` doubled). A name PostgreSQL
        /// would truncate (over 63 bytes: two long names would become one) makes the statement invalid.
        public mutating func appendInterpolation(identifier name: String) {
            if name.isEmpty || name.utf8.contains(0) || name.utf8.count > 63 {
                query.invalid = query.invalid ?? "an identifier is empty, longer than 63 bytes or holds a NUL byte"
            }
            appendLiteral("\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"")
        }

        private mutating func bind(_ value: String?) {
            query.binds.append(value)
            query.text.append("")
        }
    }
}

extension Sequence where Element == PostgresQuery {
    /// The fragments one after another, `separator` between them.
    public func joined(separator: PostgresQuery) -> PostgresQuery {
        var result: PostgresQuery = ""
        for (index, fragment) in enumerated() {
            if index > 0 { result.append(separator) }
            result.append(fragment)
        }
        return result
    }
}
