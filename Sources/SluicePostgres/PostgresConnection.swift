import CLibPQ
import Foundation
import Synchronization

/// One blocking libpq connection.
///
/// Every method blocks the calling thread: it is used only inside ``PostgresPool``'s
/// `withConnection`, whose closure runs on the pool's thread pool, never on Swift's
/// cooperative pool. The `PGconn` lives in a `Mutex`, so one thread uses it at a time.
public final class PostgresConnection: @unchecked Sendable {
    // @unchecked: `conn` is only touched while holding `lock`, so one thread at a time uses
    // the PGconn; it is freed once, in deinit, when no other reference exists.
    private let conn: OpaquePointer
    private let lock = NSLock()

    /// Connects to `url` (`postgres://user:pass@host:port/db`).
    /// - Throws: ``PostgresError`` `.unavailable`.
    public init(url: String, connectTimeout: Int = 5) throws(PostgresError) {
        let separator = url.contains("?") ? "&" : "?"
        let conninfo = "\(url)\(separator)connect_timeout=\(connectTimeout)&application_name=sluice"
        guard let conn = PQconnectdb(conninfo) else {
            throw PostgresError(.unavailable, "cannot allocate a connection")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = Self.errorMessage(conn)
            PQfinish(conn)
            throw PostgresError(.unavailable, message)
        }
        // Server notices ("relation already exists, skipping") would go to stderr unformatted.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        self.conn = conn
    }

    deinit {
        PQfinish(conn)
    }

    /// Whether the connection is still usable.
    public var isHealthy: Bool {
        lock.withLock { PQstatus(conn) == CONNECTION_OK }
    }

    /// Runs one statement, its interpolated values bound as parameters, and answers its rows.
    /// - Throws: ``PostgresError``.
    @discardableResult
    public func query(_ query: PostgresQuery) throws(PostgresError) -> PostgresRows {
        if let invalid = query.invalid { throw PostgresError(.statement, invalid) }
        let sql = query.sql, parameters = query.binds
        return try withConnection { conn throws(PostgresError) in
            let result = Self.withCStrings(parameters) { values in
                PQexecParams(conn, sql, Int32(parameters.count), nil, values, nil, nil, 0)
            }
            return try Self.consume(result, conn: conn)
        }
    }

    /// Runs fixed statements without parameters (several may be separated by `;`), such as
    /// `BEGIN` or a `CREATE TABLE`. The text is a literal of the program: nothing from input.
    public func executeUnparameterized(_ sql: StaticString) throws(PostgresError) {
        try executeScript(sql.description)
    }

    /// Runs a migration's statements (several may be separated by `;`). Internal: migrations
    /// are the program's own text, joined by the ``Migrator``.
    func executeScript(_ sql: String) throws(PostgresError) {
        try withConnection { conn throws(PostgresError) in
            _ = try Self.consume(PQexec(conn, sql), conn: conn)
        }
    }

    /// Runs `COPY … FROM STDIN` with `sql`, sending `data` (in the COPY format the statement
    /// names) in pieces of at most 64 KiB. Answers the number of rows copied.
    /// A COPY statement takes no parameters: `statement` must bind none.
    public func copyIn(_ statement: PostgresQuery, data: some Sequence<[UInt8]>) throws(PostgresError) -> Int {
        if let invalid = statement.invalid { throw PostgresError(.statement, invalid) }
        guard statement.binds.isEmpty else { throw PostgresError(.statement, "a COPY statement cannot bind parameters") }
        let sql = statement.sql
        return try withConnection { conn throws(PostgresError) in
            let start = PQexec(conn, sql)
            guard PQresultStatus(start) == PGRES_COPY_IN else {
                _ = try Self.consume(start, conn: conn)
                throw PostgresError(.copy, "the statement did not start a COPY FROM STDIN")
            }
            PQclear(start)
            var failed: String?
            for piece in data {
                var offset = 0
                while offset < piece.count {
                    let length = min(65536, piece.count - offset)
                    let status = piece.withUnsafeBufferPointer { buffer in
                        buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: piece.count) {
                            PQputCopyData(conn, $0 + offset, Int32(length))
                        }
                    }
                    if status != 1 { failed = Self.errorMessage(conn); break }
                    offset += length
                }
                if failed != nil { break }
            }
            if PQputCopyEnd(conn, failed) != 1 {
                throw PostgresError(.copy, Self.errorMessage(conn))
            }
            var copied = 0
            var error: PostgresError?
            while let result = PQgetResult(conn) {
                let status = PQresultStatus(result)
                if status == PGRES_COMMAND_OK {
                    copied = Int(String(cString: PQcmdTuples(result))) ?? 0
                } else if error == nil {
                    error = Self.resultError(result, code: .copy)
                }
                PQclear(result)
            }
            if let error { throw error }
            if let failed { throw PostgresError(.copy, failed) }
            return copied
        }
    }

    private func withConnection<T>(_ body: (OpaquePointer) throws(PostgresError) -> T) throws(PostgresError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(conn)
    }

    private static func consume(_ result: OpaquePointer?, conn: OpaquePointer) throws(PostgresError) -> PostgresRows {
        guard let result else {
            throw PostgresError(.unavailable, errorMessage(conn))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK:
            return PostgresRows(affected: Int(String(cString: PQcmdTuples(result))) ?? 0)
        case PGRES_TUPLES_OK:
            let columnCount = Int(PQnfields(result))
            let rowCount = Int(PQntuples(result))
            let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
            var rows: [[String?]] = []
            rows.reserveCapacity(rowCount)
            for r in 0..<rowCount {
                var row: [String?] = []
                row.reserveCapacity(columnCount)
                for c in 0..<columnCount {
                    if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                        row.append(nil)
                    } else {
                        let length = Int(PQgetlength(result, Int32(r), Int32(c)))
                        let value = PQgetvalue(result, Int32(r), Int32(c))!
                        row.append(value.withMemoryRebound(to: UInt8.self, capacity: length) {
                            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
                        })
                    }
                }
                rows.append(row)
            }
            return PostgresRows(columns: columns, rows: rows, affected: rowCount)
        default:
            if PQstatus(conn) != CONNECTION_OK {
                throw PostgresError(.unavailable, errorMessage(conn))
            }
            throw resultError(result, code: .statement)
        }
    }

    private static func resultError(_ result: OpaquePointer, code: PostgresError.Code) -> PostgresError {
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        let primary = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
        return PostgresError(code, sqlState: state, primary ?? "statement failed")
    }

    static func errorMessage(_ conn: OpaquePointer) -> String {
        guard let raw = PQerrorMessage(conn) else { return "unknown error" }
        let text = String(cString: raw).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "unknown error" : text
    }

    private static func withCStrings<R>(_ values: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        if values.isEmpty { return body(nil) }
        let pointers: [UnsafeMutablePointer<CChar>?] = values.map { $0.map { strdup($0) } ?? nil }
        defer { for p in pointers { free(p) } }
        let constants = pointers.map { $0.map { UnsafePointer($0) } }
        return constants.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
