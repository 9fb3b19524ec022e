import Sluice

/// CSV with a header row (RFC 4180: `,` separators, `"` quoting with `""` escapes, quoted
/// fields may span lines, LF or CRLF line ends), decoded as the body arrives.
///
/// Each record becomes an object keyed by the header's names, cells as strings (an empty cell
/// is `null`); the column types are inferred on the way (``schema``). A record with the wrong
/// number of cells or a stray quote is quarantined with the line it starts on. A header row
/// that is empty or repeats a name, or a quoted field still open at the end of the body, is an
/// ``UploadError``.
public struct CSVDecoder: UploadDecoder {
    private enum State { case fieldStart, unquoted, quoted, quoteInQuoted, afterQuoted }

    private let limits: UploadLimits
    private var utf8 = UTF8Gate()
    private var state = State.fieldStart
    private var fields: [[UInt8]] = []
    private var field: [UInt8] = []
    private var fieldWasQuoted = false
    private var raw: [UInt8] = []
    private var recordBytes = 0
    private var overflow = false
    private var badQuote = false
    private var line = 1
    private var recordLine = 1
    private var position = 0
    /// The offset of the current record's first byte.
    private var recordStart = 0
    private var openQuoteOffset = 0
    private var header: [String]?
    private var inference: [ColumnTypeInference] = []

    public init(limits: UploadLimits = UploadLimits()) {
        self.limits = limits
    }

    /// The columns and the types inferred from every cell seen so far, in header order.
    public var schema: [(name: String, type: ColumnTypeInference.ColumnType)] {
        zip(header ?? [], inference).map { ($0, $1.type) }
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        var gate = utf8
        defer { utf8 = gate }
        try gate.feed(bytes) { text throws(UploadError) in try parse(text, into: &records) }
    }

    /// Decodes whole, valid characters (``UTF8Gate`` hands them over).
    private mutating func parse(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        for i in 0..<bytes.count {
            let b = bytes[i]
            recordBytes += 1
            if raw.count < limits.maxQuarantinedBytes { raw.append(b) }
            if recordBytes > limits.maxRecordBytes, !overflow {
                overflow = true
                fields.removeAll()
                field.removeAll()
            }
            switch state {
            case .fieldStart:
                if b == UInt8(ascii: "\"") {
                    state = .quoted
                    fieldWasQuoted = true
                    openQuoteOffset = position + i
                } else if b == UInt8(ascii: ",") {
                    endField()
                } else if b == UInt8(ascii: "\n") {
                    endField()
                    try endRecord(into: &records, end: position + i)
                } else {
                    state = .unquoted
                    append(b)
                }
            case .unquoted:
                if b == UInt8(ascii: ",") {
                    endField()
                    state = .fieldStart
                } else if b == UInt8(ascii: "\n") {
                    endField()
                    try endRecord(into: &records, end: position + i)
                } else {
                    if b == UInt8(ascii: "\"") { badQuote = true }
                    append(b)
                }
            case .quoted:
                if b == UInt8(ascii: "\"") { state = .quoteInQuoted } else { append(b) }
            case .quoteInQuoted:
                if b == UInt8(ascii: "\"") {
                    append(b)  // "" is one quote
                    state = .quoted
                } else if b == UInt8(ascii: ",") {
                    endField()
                    state = .fieldStart
                } else if b == UInt8(ascii: "\n") {
                    endField()
                    try endRecord(into: &records, end: position + i)
                } else if b == UInt8(ascii: "\r") {
                    state = .afterQuoted
                } else {
                    badQuote = true
                    state = .unquoted
                    append(b)
                }
            case .afterQuoted:
                if b == UInt8(ascii: "\n") {
                    endField()
                    try endRecord(into: &records, end: position + i)
                } else {
                    badQuote = true
                    state = .unquoted
                    append(b)
                }
            }
            if b == UInt8(ascii: "\n") { line += 1 }
        }
        position += bytes.count
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        try utf8.finish()
        switch state {
        case .quoted:
            throw UploadError(.invalidCSV, offset: openQuoteOffset, "a quoted field is not closed before the end of the body")
        case .fieldStart where fields.isEmpty && field.isEmpty && recordBytes == 0:
            break
        default:
            endField()
            try endRecord(into: &records, end: position)
        }
        if header == nil {
            if position == 0 { throw UploadError(.empty, offset: 0, "the body is empty") }
            throw UploadError(.invalidCSV, offset: position, "the body has no header row")
        }
    }

    private mutating func append(_ b: UInt8) {
        if !overflow { field.append(b) }
    }

    private mutating func endField() {
        if !overflow {
            if !fieldWasQuoted, field.last == UInt8(ascii: "\r") { field.removeLast() }
            fields.append(field)
        }
        field.removeAll(keepingCapacity: true)
        fieldWasQuoted = false
    }

    /// Ends the record whose last byte (its newline, or the body's last) is at offset `end`.
    private mutating func endRecord(into records: inout [UploadRecord], end: Int) throws(UploadError) {
        defer {
            recordStart = end + 1
            fields.removeAll(keepingCapacity: true)
            raw.removeAll(keepingCapacity: true)
            recordBytes = 0
            overflow = false
            badQuote = false
            state = .fieldStart
            recordLine = line + 1
        }
        var rawText = raw
        while let last = rawText.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { rawText.removeLast() }
        let text = String(decoding: rawText, as: UTF8.self)
        if overflow {
            records.append(.malformed(reason: "record_too_long", line: recordLine, raw: text))
            return
        }
        if fields.count == 1, fields[0].isEmpty { return }  // a blank line
        guard let header else {
            let names = fields.map { String(decoding: $0, as: UTF8.self).trimmingSpaces() }
            guard !names.contains(where: \.isEmpty) else {
                throw UploadError(.invalidCSV, offset: recordStart, "the header row has an empty column name")
            }
            guard Set(names).count == names.count else {
                throw UploadError(.invalidCSV, offset: recordStart, "the header row names a column twice")
            }
            self.header = names
            inference = Array(repeating: ColumnTypeInference(), count: names.count)
            return
        }
        guard !badQuote else {
            records.append(.malformed(reason: "csv_bad_quote", line: recordLine, raw: text))
            return
        }
        guard fields.count == header.count else {
            records.append(.malformed(reason: "csv_wrong_cell_count", line: recordLine, raw: text))
            return
        }
        var object = JSONObject()
        for (index, cell) in fields.enumerated() {
            let value = String(decoding: cell, as: UTF8.self)
            inference[index].observe(value)
            object[header[index]] = value.isEmpty ? .null : .string(value)
        }
        records.append(.event(.object(object), line: recordLine))
    }
}

/// Infers a column's type from its cells: the narrowest of `integer`, `number`, `boolean`,
/// `timestamp` that every non-empty cell fits, else `string`; `empty` while no cell had a value.
public struct ColumnTypeInference: Sendable, Equatable {
    public enum ColumnType: String, Sendable {
        case empty, integer, number, boolean, timestamp, string
    }

    public private(set) var type = ColumnType.empty

    public init() {}

    public mutating func observe(_ cell: String) {
        guard !cell.isEmpty, type != .string else { return }
        let kind = Self.kind(of: cell)
        switch (type, kind) {
        case (.empty, _): type = kind
        case (let a, let b) where a == b: break
        case (.integer, .number), (.number, .integer): type = .number
        default: type = .string
        }
    }

    static func kind(of cell: String) -> ColumnType {
        let utf8 = Array(cell.utf8)
        if Int64(cell) != nil { return .integer }
        if let d = Double(cell), d.isFinite, utf8.allSatisfy({ "0123456789+-.eE".utf8.contains($0) }) { return .number }
        switch cell.lowercased() {
        case "true", "false": return .boolean
        default: break
        }
        if isTimestamp(utf8) { return .timestamp }
        return .string
    }

    /// `YYYY-MM-DD` optionally followed by `T` or space and `HH:MM[:SS[.fff]]` and a zone.
    static func isTimestamp(_ b: [UInt8]) -> Bool {
        func digits(_ range: Range<Int>) -> Bool { range.upperBound <= b.count && b[range].allSatisfy { (48...57).contains($0) } }
        guard b.count >= 10, digits(0..<4), b[4] == 0x2D, digits(5..<7), b[7] == 0x2D, digits(8..<10) else { return false }
        if b.count == 10 { return true }
        guard b[10] == UInt8(ascii: "T") || b[10] == 0x20, b.count >= 16, digits(11..<13), b[13] == 0x3A, digits(14..<16) else { return false }
        let rest = b[16...]
        return rest.allSatisfy { (48...57).contains($0) || ":.+-Z".utf8.contains($0) }
    }
}
