import Sluice

/// One record decoded from an upload: an event, or a record that does not parse and goes to
/// the quarantine with its line number (its 1-based position for JSON arrays and XML).
public enum UploadRecord: Sendable, Equatable {
    /// A well-formed record, as a JSON object.
    case event(JSONValue, line: Int)
    /// A well-formed record written as a row: a JSON array of its values, whose event is `shape`
    /// with the values in place (``RowShape``; a CSV decoded with a ``CSVColumnMapping``). The
    /// records of one upload share one shape.
    case row([UInt8], shape: [UInt8], line: Int)
    /// A record that does not parse; `raw` is its text, cut to `UploadLimits.maxQuarantinedBytes`.
    case malformed(reason: String, line: Int, raw: String)

    /// The event of a well-formed record (a row built into its shape); nil for a malformed one.
    public func eventValue() throws -> JSONValue? {
        switch self {
        case .event(let value, _):
            return value
        case .row(let bytes, let shape, _):
            return try RowShape(json: shape).event(JSONParser().parse(bytes))
        case .malformed:
            return nil
        }
    }
}

/// A body that cannot be parsed at all: answered 400 and nothing of it is loaded.
public struct UploadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes, used as the problem's `code`.
    public enum Code: String, Sendable {
        case invalidUTF8 = "invalid_utf8"
        case invalidJSON = "invalid_json"
        case notAnArray = "json_not_an_array"
        case truncated = "truncated_body"
        case tooDeep = "too_deep"
        case invalidXML = "invalid_xml"
        case xmlDTDRefused = "xml_dtd_refused"
        case invalidCSV = "invalid_csv"
        case binary = "binary_body"
        /// The body holds no record: no bytes, blank lines, `[]`, a CSV header alone.
        case empty = "empty_body"
    }

    public var code: Code
    /// The byte offset in the body where the problem is.
    public var offset: Int
    /// A sentence for people; never the body's content.
    public var message: String

    public init(_ code: Code, offset: Int, _ message: String) {
        self.code = code
        self.offset = offset
        self.message = message
    }

    public var description: String { "\(code.rawValue) at byte \(offset): \(message)" }
}

/// Bounds that keep a decoder's memory flat whatever the body.
public struct UploadLimits: Sendable, Equatable {
    /// The longest record (an NDJSON or text line, a CSV record, a JSON array element, an XML
    /// event) kept; a longer one is quarantined as `record_too_long` without being buffered.
    public var maxRecordBytes: Int
    /// How much of a malformed record's text the quarantine keeps.
    public var maxQuarantinedBytes: Int
    /// The deepest nesting accepted in a JSON or XML record.
    public var maxDepth: Int

    public init(maxRecordBytes: Int = 1 << 20, maxQuarantinedBytes: Int = 4096, maxDepth: Int = 64) {
        self.maxRecordBytes = maxRecordBytes
        self.maxQuarantinedBytes = maxQuarantinedBytes
        self.maxDepth = maxDepth
    }
}

/// Decodes an upload body fed in pieces, as it arrives, never holding it whole.
public protocol UploadDecoder {
    /// Decodes what `bytes` completes and appends the records found.
    /// - Throws: ``UploadError`` when the body cannot be parsed at all.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError)
    /// Decodes what is left at the end of the body.
    mutating func finish(into records: inout [UploadRecord]) throws(UploadError)
}

extension UploadDecoder {
    /// Feeds bytes held in an array (tests, small bodies, bytes held back).
    public mutating func feed(_ bytes: [UInt8], into records: inout [UploadRecord]) throws(UploadError) {
        let result: Result<Void, UploadError> = bytes.withUnsafeBytes { raw in
            do throws(UploadError) {
                try feed(raw, into: &records)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Decodes a whole body at once (tests, small bodies).
    public mutating func decodeAll(_ bytes: [UInt8]) throws(UploadError) -> [UploadRecord] {
        var records: [UploadRecord] = []
        try feed(bytes, into: &records)
        try finish(into: &records)
        return records
    }
}

/// Skips a UTF-8 byte order mark at the start of a body (spreadsheet exports write one),
/// then feeds `decoder`; offsets in its errors stay offsets in the body as sent.
public struct ByteOrderMarkSkipping<Decoder: UploadDecoder>: UploadDecoder {
    public private(set) var decoder: Decoder
    /// The body's first bytes, held until it is known whether they are a mark.
    private var head: [UInt8] = []
    private var decided = false
    private var skipped = 0
    static var mark: [UInt8] { [0xEF, 0xBB, 0xBF] }

    public init(_ decoder: Decoder) {
        self.decoder = decoder
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        guard !decided else { return try shifted { (d: inout Decoder) throws(UploadError) in try d.feed(bytes, into: &records) } }
        let take = min(3 - head.count, bytes.count)
        head += bytes.prefix(take)
        guard head.count == 3 || head != Array(Self.mark.prefix(head.count)) else { return }  // maybe a mark: wait for more
        try decide(into: &records)
        let rest = UnsafeRawBufferPointer(rebasing: bytes[take...])
        if !rest.isEmpty { try shifted { (d: inout Decoder) throws(UploadError) in try d.feed(rest, into: &records) } }
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        if !decided { try decide(into: &records) }
        try shifted { (d: inout Decoder) throws(UploadError) in try d.finish(into: &records) }
    }

    /// Drops the held bytes when they are the mark, else feeds them.
    private mutating func decide(into records: inout [UploadRecord]) throws(UploadError) {
        decided = true
        let held = head
        head = []
        if held == Self.mark {
            skipped = 3
            return
        }
        try decoder.feed(held, into: &records)
    }

    private mutating func shifted(_ body: (inout Decoder) throws(UploadError) -> Void) throws(UploadError) {
        do {
            try body(&decoder)
        } catch {
            var error = error
            error.offset += skipped
            throw error
        }
    }
}

/// Validates UTF-8 across piece boundaries and refuses NUL bytes (binary bodies): overlong forms, surrogates and code points above
/// U+10FFFF are errors, as is a sequence cut off by the end of the body.
public struct UTF8StreamValidator: Sendable {
    private var needed = 0
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF
    private var sequenceStart = 0
    /// Bytes seen so far.
    public private(set) var offset = 0

    public init() {}

    /// Checks the next piece.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) throws(UploadError) {
        var i = 0
        let count = bytes.count
        while i < count {
            let b = bytes[i]
            if needed == 0 {
                if b < 0x80 {
                    // NUL and the other C0 controls besides whitespace and ESC never occur in text: a body holding one is binary.
                    guard b >= 0x20 || Self.isTextControl(b) else { throw UploadError(.binary, offset: offset + i, "the body is binary, not text") }
                    i += 1
                    while i < count {
                        let c = bytes[i]
                        guard c < 0x80, c >= 0x20 || Self.isTextControl(c) else { break }
                        i += 1
                    }
                    continue
                }
                sequenceStart = offset + i
                lower = 0x80
                upper = 0xBF
                switch b {
                case 0xC2...0xDF: needed = 1
                case 0xE0: needed = 2; lower = 0xA0
                case 0xE1...0xEC, 0xEE...0xEF: needed = 2
                case 0xED: needed = 2; upper = 0x9F
                case 0xF0: needed = 3; lower = 0x90
                case 0xF1...0xF3: needed = 3
                case 0xF4: needed = 3; upper = 0x8F
                default:
                    // A body whose very first byte cannot start UTF-8 (PNG, gzip, …) is a binary file, not bad text.
                    if offset + i == 0 { throw UploadError(.binary, offset: 0, "the body is binary, not text") }
                    throw UploadError(.invalidUTF8, offset: offset + i, "the body is not valid UTF-8")
                }
            } else {
                // The offset names the start of the broken sequence, as Python's and ICU's decoders do.
                guard b >= lower, b <= upper else {
                    throw UploadError(.invalidUTF8, offset: sequenceStart, "the body is not valid UTF-8")
                }
                lower = 0x80
                upper = 0xBF
                needed -= 1
            }
            i += 1
        }
        offset += count
    }

    /// Tab, line feed, vertical tab, form feed, carriage return and ESC (coloured log lines).
    @inline(__always) static func isTextControl(_ b: UInt8) -> Bool {
        (b >= 0x09 && b <= 0x0D) || b == 0x1B
    }

    /// Checks that the body did not end inside a sequence.
    public func finish() throws(UploadError) {
        if needed > 0 { throw UploadError(.invalidUTF8, offset: sequenceStart, "the body ends inside a UTF-8 sequence") }
    }

    /// Where the character left incomplete by the bytes seen so far starts, if one is.
    public var pendingStart: Int? { needed > 0 ? sequenceStart : nil }
}

/// Validates a body's UTF-8 piece by piece and hands a decoder whole characters only: a
/// character cut by a piece boundary waits for its rest, and before invalid bytes the decoder
/// gets the valid text in front of them. So a decoder sees the same text however the body was
/// cut into pieces, and the error reported is the body's first: a decoder's own error before
/// the bad bytes wins over the bad bytes (the fuzz targets check this).
public struct UTF8Gate: Sendable {
    private var validator = UTF8StreamValidator()
    /// The start of a character that the next piece completes (at most 3 bytes).
    private var held: [UInt8] = []

    public init() {}

    /// Bytes seen so far.
    public var offset: Int { validator.offset }

    /// Checks `bytes` and passes the whole characters they complete to `body`, in order.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws(UploadError) -> Void) throws(UploadError) {
        let start = validator.offset
        var failure: UploadError?
        do { try validator.feed(bytes) } catch { failure = error }
        // Everything before `end` is whole, valid characters.
        let end = failure?.offset ?? validator.pendingStart ?? (start + bytes.count)
        var from = 0
        if !held.isEmpty {
            let rest = Self.sequenceLength(held[0]) - held.count
            guard end >= start + rest else {
                if let failure { throw failure }
                held += bytes  // still not complete: all of `bytes` belongs to it
                return
            }
            let character = held + Array(bytes[..<rest])
            held = []
            let result: Result<Void, UploadError> = character.withUnsafeBytes { raw in
                do throws(UploadError) {
                    try body(raw)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            try result.get()
            from = rest
        }
        let cut = end - start
        if cut > from { try body(UnsafeRawBufferPointer(rebasing: bytes[from..<cut])) }
        if let failure { throw failure }
        held = Array(bytes[cut...])
    }

    /// Checks that the body did not end inside a character.
    public func finish() throws(UploadError) {
        try validator.finish()
    }

    /// The length of the UTF-8 sequence a valid lead byte starts.
    static func sequenceLength(_ lead: UInt8) -> Int {
        lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
    }
}
