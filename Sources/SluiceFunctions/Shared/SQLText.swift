import Foundation
import SluicePostgres

/// SQL fragments the functions share. Fixed text only: nothing here takes a value from input.
enum SQLText {
    /// A timestamptz column as ISO 8601 in UTC with milliseconds.
    static func iso(_ column: PostgresQuery) -> PostgresQuery {
        "to_char(\(column) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    }

    /// `value` as one field of PostgreSQL's COPY csv format, appended to `buffer`: quoted, with
    /// quotes doubled; `nil` is an unquoted empty field, which COPY reads as NULL.
    static func appendCSV(_ value: String?, to buffer: inout [UInt8]) {
        guard let value else { return }
        buffer.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            if byte == UInt8(ascii: "\"") { buffer.append(byte) }
            buffer.append(byte)
        }
        buffer.append(UInt8(ascii: "\""))
    }

    /// Whether `text` is a UUID in its 36-character form (either case).
    static func isUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) { if b != UInt8(ascii: "-") { return false } }
            else if !((48...57).contains(b) || (97...102).contains(b) || (65...70).contains(b)) { return false }
        }
        return true
    }
}

/// Wall-clock time as the pipeline writes it.
public enum PipelineClock {
    /// Milliseconds since 1970 now (the clock freshness and `received_at` use).
    public static func milliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// `milliseconds` since 1970 as ISO 8601 in UTC with milliseconds (`2026-01-02T03:04:05.006Z`).
    static func timestamp(_ milliseconds: Int64) -> String {
        let seconds = milliseconds / 1000, millis = milliseconds % 1000
        let days = Int(seconds / 86_400), secondOfDay = Int(seconds % 86_400)
        let (y, m, d) = civil(fromDays: days)
        func pad(_ v: Int, _ n: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, n - s.count)) + s }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(Int(millis), 3))Z"
    }

    /// The date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
    static func civil(fromDays z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
