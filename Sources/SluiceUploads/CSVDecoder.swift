import Sluice

/// CSV with a header row (RFC 4180: `,` separators, `"` quoting with `""` escapes, quoted
/// fields may span lines, LF or CRLF line ends), decoded as the body arrives.
///
/// Without a mapping each record becomes an object keyed by the header's names, cells as
/// strings (an empty cell is `null`); with a ``CSVColumnMapping`` each record becomes its event,
/// written as a row of JSON values straight from the cells (``UploadRecord/row(_:shape:line:)``)
/// when the header's paths allow it. The column types are inferred on the way (``schema``). A record
/// with the wrong number of cells or a stray quote is quarantined with the line it starts on.
/// A header row that is empty or repeats a name, or a quoted field still open at the end of
/// the body, is an ``UploadError``.
public struct CSVDecoder: UploadDecoder {
    private enum State { case fieldStart, unquoted, quoted, quoteInQuoted, afterQuoted }

    private let limits: UploadLimits
    private let mapping: CSVColumnMapping?
    private var layout: CSVEventLayout?
    /// The header's columns under the mapping, when there is no layout.
    private var columns: CSVColumnMapping.Columns?
    private var utf8 = UTF8Gate()
    private var state = State.fieldStart
    /// The current record's cells, unescaped, one after the other; `cellEnds[i]` ends cell `i`.
    private var cells: [UInt8] = []
    private var cellEnds: [Int] = []
    private var fieldWasQuoted = false
    /// The current record's first bytes that came in earlier pieces (for the quarantine).
    private var rawHead: [UInt8] = []
    private var overflow = false
    private var badQuote = false
    private var line = 1
    private var recordLine = 1
    /// Bytes before the current piece.
    private var position = 0
    /// The offset of the current record's first byte.
    private var recordStart = 0
    private var openQuoteOffset = 0
    private var header: [String]?
    private var inference: [ColumnTypeInference] = []

    public init(limits: UploadLimits = UploadLimits(), mapping: CSVColumnMapping? = nil) {
        self.limits = limits
        self.mapping = mapping
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

    private static let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")

    /// Decodes whole, valid characters (``UTF8Gate`` hands them over). Runs of plain bytes are
    /// scanned and copied at once; only the bytes that end them go through the state machine.
    private mutating func parse(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        let count = bytes.count
        /// Where the current record starts in this piece (0 when it began in an earlier one).
        var pieceRecordStart = 0
        var i = 0
        while i < count {
            switch state {
            case .fieldStart, .unquoted:
                if state == .fieldStart, bytes[i] == Self.quote {
                    state = .quoted
                    fieldWasQuoted = true
                    openQuoteOffset = position + i
                    i += 1
                    continue
                }
                var j = i
                while j < count {
                    let c = bytes[j]
                    if c == Self.comma || c == Self.newline || c == Self.quote { break }
                    j += 1
                }
                if j > i {
                    append(bytes, i, j)
                    state = .unquoted
                }
                guard j < count else {
                    i = j
                    break
                }
                let c = bytes[j]
                if c == Self.comma {
                    endField(at: position + j)
                    state = .fieldStart
                } else if c == Self.newline {
                    endField(at: position + j)
                    try endRecord(next: position + j + 1, piece: bytes, from: pieceRecordStart, into: &records)
                    pieceRecordStart = j + 1
                    line += 1
                } else {
                    badQuote = true
                    state = .unquoted
                    append(bytes, j, j + 1)
                }
                i = j + 1
            case .quoted:
                var j = i
                while j < count {
                    let c = bytes[j]
                    if c == Self.quote { break }
                    if c == Self.newline { line += 1 }
                    j += 1
                }
                if j > i { append(bytes, i, j) }
                if j < count { state = .quoteInQuoted }
                i = j + 1
            case .quoteInQuoted:
                let b = bytes[i]
                if b == Self.quote {
                    append(bytes, i, i + 1)  // "" is one quote
                    state = .quoted
                } else if b == Self.comma {
                    endField(at: position + i)
                    state = .fieldStart
                } else if b == Self.newline {
                    endField(at: position + i)
                    try endRecord(next: position + i + 1, piece: bytes, from: pieceRecordStart, into: &records)
                    pieceRecordStart = i + 1
                    line += 1
                } else if b == Self.cr {
                    state = .afterQuoted
                } else {
                    badQuote = true
                    state = .unquoted
                    append(bytes, i, i + 1)
                }
                i += 1
            case .afterQuoted:
                let b = bytes[i]
                if b == Self.newline {
                    endField(at: position + i)
                    try endRecord(next: position + i + 1, piece: bytes, from: pieceRecordStart, into: &records)
                    pieceRecordStart = i + 1
                    line += 1
                } else {
                    badQuote = true
                    state = .unquoted
                    append(bytes, i, i + 1)
                }
                i += 1
            }
        }
        // The open record's bytes of this piece, kept for the quarantine (up to its limit).
        let room = limits.maxQuarantinedBytes - rawHead.count
        if room > 0, pieceRecordStart < count {
            rawHead.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[pieceRecordStart..<min(count, pieceRecordStart + room)]))
        }
        position += count
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        try utf8.finish()
        switch state {
        case .quoted:
            throw UploadError(.invalidCSV, offset: openQuoteOffset, "a quoted field is not closed before the end of the body")
        case .fieldStart where cellEnds.isEmpty && cells.isEmpty && position == recordStart:
            break
        default:
            endField(at: position)
            try endRecord(next: position, piece: UnsafeRawBufferPointer(start: nil, count: 0), from: 0, into: &records)
        }
        if header == nil {
            if position == 0 { throw UploadError(.empty, offset: 0, "the body is empty") }
            throw UploadError(.invalidCSV, offset: position, "the body has no header row")
        }
    }

    /// Stops keeping the record's cells once it runs past `maxRecordBytes` with the byte at
    /// `offset`: it is quarantined as too long, and its cells are never needed.
    private mutating func noteLength(through offset: Int) {
        guard !overflow, offset - recordStart + 1 > limits.maxRecordBytes else { return }
        overflow = true
        cells.removeAll()
        cellEnds.removeAll()
    }

    /// Adds `bytes[from..<to]` to the open cell, unless the record is already too long.
    private mutating func append(_ bytes: UnsafeRawBufferPointer, _ from: Int, _ to: Int) {
        noteLength(through: position + to - 1)
        guard !overflow else { return }
        cells.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[from..<to]))
    }

    /// Ends the open cell at the separator at `offset`.
    private mutating func endField(at offset: Int) {
        noteLength(through: offset)
        if !overflow {
            if !fieldWasQuoted, cells.count > (cellEnds.last ?? 0), cells.last == Self.cr { cells.removeLast() }
            cellEnds.append(cells.count)
        }
        fieldWasQuoted = false
    }

    /// The record's text for the quarantine: its first bytes, without the line end.
    private func rawText(piece: UnsafeRawBufferPointer, from: Int, to: Int) -> String {
        var raw = rawHead
        let room = limits.maxQuarantinedBytes - raw.count
        if room > 0, from < to { raw.append(contentsOf: UnsafeRawBufferPointer(rebasing: piece[from..<min(to, from + room)])) }
        while let last = raw.last, last == Self.newline || last == Self.cr { raw.removeLast() }
        return String(decoding: raw, as: UTF8.self)
    }

    /// Ends the record whose bytes end before offset `next` (after its newline, or at the
    /// body's end); `piece[from...]` holds those of its bytes that came in the current piece.
    private mutating func endRecord(next: Int, piece: UnsafeRawBufferPointer, from: Int,
                                    into records: inout [UploadRecord]) throws(UploadError) {
        defer {
            recordStart = next
            cells.removeAll(keepingCapacity: true)
            cellEnds.removeAll(keepingCapacity: true)
            rawHead.removeAll(keepingCapacity: true)
            overflow = false
            badQuote = false
            state = .fieldStart
            recordLine = line + 1
        }
        let to = next - position
        noteLength(through: next - 1)
        if overflow {
            records.append(.malformed(reason: "record_too_long", line: recordLine, raw: rawText(piece: piece, from: from, to: to)))
            return
        }
        if cellEnds.count == 1, cellEnds[0] == 0 { return }  // a blank line
        guard let header else {
            let names = cellEnds.indices.map { String(decoding: cell($0), as: UTF8.self).trimmingSpaces() }
            guard !names.contains(where: \.isEmpty) else {
                throw UploadError(.invalidCSV, offset: recordStart, "the header row has an empty column name")
            }
            guard Set(names).count == names.count else {
                throw UploadError(.invalidCSV, offset: recordStart, "the header row names a column twice")
            }
            let kept = mapping?.headerMasking?(names) ?? names
            self.header = kept
            inference = Array(repeating: ColumnTypeInference(), count: kept.count)
            layout = mapping?.layout(header: kept)
            if layout == nil { columns = mapping?.columns(header: kept) }
            return
        }
        guard !badQuote else {
            records.append(.malformed(reason: "csv_bad_quote", line: recordLine, raw: rawText(piece: piece, from: from, to: to)))
            return
        }
        guard cellEnds.count == header.count else {
            records.append(.malformed(reason: "csv_wrong_cell_count", line: recordLine, raw: rawText(piece: piece, from: from, to: to)))
            return
        }
        var inference = self.inference
        cells.withUnsafeBytes { all in
            var start = 0
            for (index, end) in cellEnds.enumerated() {
                inference[index].observe(UnsafeRawBufferPointer(rebasing: all[start..<end]))
                start = end
            }
        }
        self.inference = inference
        if let layout {
            var row: [UInt8] = []
            row.reserveCapacity(cells.count + 4 * cellEnds.count + 16)
            cells.withUnsafeBufferPointer { all in
                cellEnds.withUnsafeBufferPointer { ends in layout.writeRow(cells: all, ends: ends, into: &row) }
            }
            records.append(.row(row, shape: layout.shape, line: recordLine))
            return
        }
        var values: [JSONValue] = []
        values.reserveCapacity(cellEnds.count)
        for index in cellEnds.indices {
            let value = String(decoding: cell(index), as: UTF8.self)
            values.append(value.isEmpty ? .null : .string(value))
        }
        if let mapping, let columns {
            records.append(.event(mapping.map(cells: values, columns: columns), line: recordLine))
            return
        }
        var object = JSONObject()
        object.reserveCapacity(values.count)
        for (name, value) in zip(header, values) { object[name] = value }
        records.append(.event(.object(object), line: recordLine))
    }

    /// The bytes of cell `index` of the current record.
    private func cell(_ index: Int) -> ArraySlice<UInt8> {
        cells[(index == 0 ? 0 : cellEnds[index - 1])..<cellEnds[index]]
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
        var cell = cell
        cell.withUTF8 { observe(UnsafeRawBufferPointer($0)) }
    }

    /// Observes a cell given as its UTF-8 bytes.
    public mutating func observe(_ cell: UnsafeRawBufferPointer) {
        guard !cell.isEmpty, type != .string else { return }
        let kind = Self.kind(of: cell)
        switch (type, kind) {
        case (.empty, _): type = kind
        case (let a, let b) where a == b: break
        case (.integer, .number), (.number, .integer): type = .number
        default: type = .string
        }
    }

    /// The narrowest type of one non-empty cell, from its bytes.
    static func kind(of cell: UnsafeRawBufferPointer) -> ColumnType {
        if let kind = numericKind(of: cell) { return kind }
        if cell.count == 4 || cell.count == 5 {
            let lower = cell.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
            if lower.elementsEqual("true".utf8) || lower.elementsEqual("false".utf8) { return .boolean }
        }
        if isTimestamp(cell) { return .timestamp }
        return .string
    }

    /// `.integer` for a cell `Int64(_:)` reads, `.number` for one `Double(_:)` reads as a
    /// finite number, nil for any other: the grammar checked on the bytes, and `Double` called
    /// only where an exponent or 309 digits could make it infinite.
    static func numericKind(of cell: UnsafeRawBufferPointer) -> ColumnType? {
        @inline(__always) func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        let count = cell.count
        var i = 0
        var negative = false
        if cell[0] == UInt8(ascii: "+") || cell[0] == UInt8(ascii: "-") {
            negative = cell[0] == UInt8(ascii: "-")
            i = 1
        }
        let integerStart = i
        var magnitude: UInt64 = 0
        var overflow = false
        while i < count, isDigit(cell[i]) {
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (m2, o2) = m1.addingReportingOverflow(UInt64(cell[i] - 0x30))
            overflow = overflow || o1 || o2
            magnitude = m2
            i += 1
        }
        let integerDigits = i - integerStart
        if i == count {
            guard integerDigits > 0 else { return nil }
            if !overflow, magnitude <= UInt64(Int64.max) || (negative && magnitude == UInt64(Int64.max) + 1) { return .integer }
            return integerDigits <= 308 ? .number : finite(cell)
        }
        var fractionDigits = 0
        if cell[i] == UInt8(ascii: ".") {
            i += 1
            while i < count, isDigit(cell[i]) {
                i += 1
                fractionDigits += 1
            }
        }
        guard integerDigits + fractionDigits > 0 else { return nil }
        if i == count { return integerDigits <= 308 ? .number : finite(cell) }
        guard cell[i] == UInt8(ascii: "e") || cell[i] == UInt8(ascii: "E") else { return nil }
        i += 1
        if i < count, cell[i] == UInt8(ascii: "+") || cell[i] == UInt8(ascii: "-") { i += 1 }
        let exponentStart = i
        while i < count, isDigit(cell[i]) { i += 1 }
        guard i == count, i > exponentStart else { return nil }
        return finite(cell)
    }

    /// `.number` when `Double(_:)` reads the cell as a finite number.
    private static func finite(_ cell: UnsafeRawBufferPointer) -> ColumnType? {
        guard let value = Double(String(decoding: cell, as: UTF8.self)), value.isFinite else { return nil }
        return .number
    }

    /// `YYYY-MM-DD` optionally followed by `T` or space and `HH:MM[:SS[.fff]]` and a zone.
    static func isTimestamp(_ b: UnsafeRawBufferPointer) -> Bool {
        func digits(_ range: Range<Int>) -> Bool { range.upperBound <= b.count && b[range].allSatisfy { (48...57).contains($0) } }
        guard b.count >= 10, digits(0..<4), b[4] == 0x2D, digits(5..<7), b[7] == 0x2D, digits(8..<10) else { return false }
        if b.count == 10 { return true }
        guard b[10] == UInt8(ascii: "T") || b[10] == 0x20, b.count >= 16, digits(11..<13), b[13] == 0x3A, digits(14..<16) else { return false }
        let rest = b[16...]
        return rest.allSatisfy { (48...57).contains($0) || ":.+-Z".utf8.contains($0) }
    }
}
