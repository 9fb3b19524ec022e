/// The rows a query answered, in text format; read them typed with ``decode(_:)`` or
/// ``PostgresRow/decode(_:)``.
public struct PostgresRows: Sendable, RandomAccessCollection {
    /// Column names, in order.
    public var columns: [String]
    /// Rows of text values (`nil` for SQL NULL).
    public var rows: [[String?]]
    /// The number of rows the statement affected (INSERT, UPDATE, DELETE, COPY).
    public var affected: Int

    public init(columns: [String] = [], rows: [[String?]] = [], affected: Int = 0) {
        self.columns = columns
        self.rows = rows
        self.affected = affected
    }

    @inlinable
    public var startIndex: Int { rows.startIndex }
    @inlinable
    public var endIndex: Int { rows.endIndex }

    /// Row `position`.
    @inlinable
    public subscript(position: Int) -> PostgresRow {
        PostgresRow(columns: columns, values: rows[position])
    }

    /// The value of `column` in row `row`, as text.
    public subscript(row: Int, column: String) -> String? {
        guard let index = columns.firstIndex(of: column), row < rows.count else { return nil }
        return rows[row][index]
    }

    /// The first column of the first row, as text.
    public var scalar: String? { rows.first?.first ?? nil }

    /// Every row decoded as the tuple `types`, one type per column.
    /// - Throws: ``PostgresError`` `.decoding` naming the column (never its value).
    @inlinable
    public func decode<each T: PostgresDecodable>(_ types: (repeat each T).Type) throws(PostgresError) -> [(repeat each T)] {
        var decoded: [(repeat each T)] = []
        decoded.reserveCapacity(rows.count)
        for index in rows.indices {
            decoded.append(try self[index].decode(types))
        }
        return decoded
    }

    /// Every row of a one-column answer decoded as `type`.
    /// - Throws: ``PostgresError`` `.decoding` naming the column (never its value).
    @inlinable
    public func decode<T: PostgresDecodable>(_ type: T.Type) throws(PostgresError) -> [T] {
        var decoded: [T] = []
        decoded.reserveCapacity(rows.count)
        for index in rows.indices {
            decoded.append(try self[index].decode(type))
        }
        return decoded
    }

    /// The first column of the first row decoded as `type`; `nil` when there is no row.
    /// - Throws: ``PostgresError`` `.decoding`.
    @inlinable
    public func scalar<T: PostgresDecodable>(_ type: T.Type) throws(PostgresError) -> T? {
        guard !rows.isEmpty else { return nil }
        return try self[0].decode(type, at: 0)
    }
}

/// One row of ``PostgresRows``.
public struct PostgresRow: Sendable {
    /// Column names, in order.
    public let columns: [String]
    /// Text values (`nil` for SQL NULL).
    public let values: [String?]

    @inlinable
    public init(columns: [String], values: [String?]) {
        self.columns = columns
        self.values = values
    }

    /// The row decoded as the tuple `types`, one type per column, in order.
    /// - Throws: ``PostgresError`` `.decoding` when the column count differs or a column does
    ///   not decode.
    @inlinable
    public func decode<each T: PostgresDecodable>(_ types: (repeat each T).Type) throws(PostgresError) -> (repeat each T) {
        var count = 0
        for _ in repeat (each T).self { count += 1 }
        guard count == values.count else {
            throw PostgresError(.decoding, "the row has \(values.count) columns, not \(count)")
        }
        var index = 0
        func next<V: PostgresDecodable>(_ type: V.Type) throws(PostgresError) -> V {
            defer { index += 1 }
            return try decode(type, at: index)
        }
        return (repeat try next((each T).self))
    }

    /// The only column of the row decoded as `type`.
    @inlinable
    public func decode<T: PostgresDecodable>(_ type: T.Type) throws(PostgresError) -> T {
        guard values.count == 1 else {
            throw PostgresError(.decoding, "the row has \(values.count) columns, not 1")
        }
        return try decode(type, at: 0)
    }

    /// Column `index` decoded as `type`.
    @inlinable
    public func decode<T: PostgresDecodable>(_ type: T.Type, at index: Int) throws(PostgresError) -> T {
        guard values.indices.contains(index) else {
            throw PostgresError(.decoding, "the row has no column \(index)")
        }
        do {
            return try T(postgresColumn: values[index])
        } catch {
            let name = index < columns.count ? columns[index] : String(index)
            switch error {
            case .null: throw PostgresError(.decoding, "column \(name) is NULL, not \(T.self)")
            case .malformed: throw PostgresError(.decoding, "column \(name) is not \(T.self)")
            }
        }
    }

    /// Column `name` decoded as `type`.
    @inlinable
    public func decode<T: PostgresDecodable>(_ type: T.Type, column name: String) throws(PostgresError) -> T {
        guard let index = columns.firstIndex(of: name) else {
            throw PostgresError(.decoding, "the row has no column \(name)")
        }
        return try decode(type, at: index)
    }
}
