/// The rows a query answered, in text format.
public struct PostgresRows: Sendable {
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

    /// The value of `column` in row `row`.
    public subscript(row: Int, column: String) -> String? {
        guard let index = columns.firstIndex(of: column), row < rows.count else { return nil }
        return rows[row][index]
    }

    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }
}
