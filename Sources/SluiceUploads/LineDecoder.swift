import Sluice

/// Splits a body into lines (`\n`, with an optional `\r` before it) across pieces, keeping at
/// most `maxRecordBytes` of a line: a longer line is reported as too long, not buffered.
struct LineSplitter {
    let limits: UploadLimits
    private var current: [UInt8] = []
    private var overflow = false
    private(set) var line = 0

    init(limits: UploadLimits) {
        self.limits = limits
    }

    enum Line {
        case complete(UnsafeRawBufferPointer, number: Int)
        case tooLong(prefix: [UInt8], number: Int)
    }

    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (Line) throws(UploadError) -> Void) throws(UploadError) {
        var start = 0
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else {
                append(UnsafeRawBufferPointer(rebasing: bytes[start...]))
                return
            }
            let piece = UnsafeRawBufferPointer(rebasing: bytes[start..<newline])
            line += 1
            if current.isEmpty, !overflow, piece.count <= limits.maxRecordBytes {
                try body(.complete(Self.trimCR(piece), number: line))  // the whole line is in this piece
            } else {
                append(piece)
                try flush(body)
            }
            start = newline + 1
        }
    }

    mutating func finish(_ body: (Line) throws(UploadError) -> Void) throws(UploadError) {
        guard !current.isEmpty || overflow else { return }
        line += 1
        try flush(body)
    }

    private mutating func append(_ piece: UnsafeRawBufferPointer) {
        guard !overflow else { return }
        if current.count + piece.count > limits.maxRecordBytes {
            let room = max(0, limits.maxQuarantinedBytes - current.count)
            current.append(contentsOf: piece.prefix(room))
            overflow = true
        } else {
            current.append(contentsOf: piece)
        }
    }

    private mutating func flush(_ body: (Line) throws(UploadError) -> Void) throws(UploadError) {
        defer {
            current.removeAll(keepingCapacity: current.count <= 65536)
            overflow = false
        }
        if overflow {
            try body(.tooLong(prefix: Array(current.prefix(limits.maxQuarantinedBytes)), number: line))
            return
        }
        let result: Result<Void, UploadError> = current.withUnsafeBytes { raw in
            do throws(UploadError) {
                try body(.complete(Self.trimCR(raw), number: line))
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    static func trimCR(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        if let last = bytes.last, last == UInt8(ascii: "\r") { return UnsafeRawBufferPointer(rebasing: bytes.dropLast()) }
        return bytes
    }

    static func isBlank(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.allSatisfy { $0 == 0x20 || $0 == 0x09 }
    }
}

/// NDJSON: one JSON object per line; blank lines are skipped. A line that is not a JSON object
/// is quarantined with its line number (`invalid_json`, `too_deep`, `not_an_object`, `record_too_long`).
public struct NDJSONDecoder: UploadDecoder {
    private var lines: LineSplitter
    private var utf8 = UTF8Gate()
    private let parser: JSONParser
    private let limits: UploadLimits

    public init(limits: UploadLimits = UploadLimits()) {
        self.limits = limits
        lines = LineSplitter(limits: limits)
        parser = JSONParser(maxDepth: limits.maxDepth)
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        let parser = self.parser, limits = self.limits
        var gate = utf8
        defer { utf8 = gate }
        try gate.feed(bytes) { text throws(UploadError) in
            try lines.feed(text) { line throws(UploadError) in Self.decode(line, parser: parser, limits: limits, into: &records) }
        }
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        try utf8.finish()
        let parser = self.parser, limits = self.limits
        try lines.finish { line throws(UploadError) in Self.decode(line, parser: parser, limits: limits, into: &records) }
    }

    static func decode(_ line: LineSplitter.Line, parser: JSONParser, limits: UploadLimits, into records: inout [UploadRecord]) {
        switch line {
        case .tooLong(let prefix, let number):
            records.append(.malformed(reason: "record_too_long", line: number, raw: String(decoding: prefix, as: UTF8.self)))
        case .complete(let bytes, let number):
            guard !LineSplitter.isBlank(bytes) else { return }
            do {
                let value = try parser.parse(bytes)
                guard case .object = value else {
                    records.append(.malformed(reason: "not_an_object", line: number, raw: quarantineText(bytes, limits)))
                    return
                }
                records.append(.event(value, line: number))
            } catch {
                records.append(.malformed(reason: error.code == .tooDeep ? "too_deep" : "invalid_json", line: number,
                                          raw: quarantineText(bytes, limits)))
            }
        }
    }
}

/// Plain text: every non-blank line is the event `{"text": line}`.
public struct TextDecoder: UploadDecoder {
    private var lines: LineSplitter
    private var utf8 = UTF8Gate()
    private let limits: UploadLimits

    public init(limits: UploadLimits = UploadLimits()) {
        self.limits = limits
        lines = LineSplitter(limits: limits)
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        var gate = utf8
        defer { utf8 = gate }
        try gate.feed(bytes) { text throws(UploadError) in
            try lines.feed(text) { line throws(UploadError) in Self.decode(line, into: &records) }
        }
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        try utf8.finish()
        try lines.finish { line throws(UploadError) in Self.decode(line, into: &records) }
    }

    static func decode(_ line: LineSplitter.Line, into records: inout [UploadRecord]) {
        switch line {
        case .tooLong(let prefix, let number):
            records.append(.malformed(reason: "record_too_long", line: number, raw: String(decoding: prefix, as: UTF8.self)))
        case .complete(let bytes, let number):
            guard !LineSplitter.isBlank(bytes) else { return }
            records.append(.event(["text": .string(String(decoding: bytes, as: UTF8.self))], line: number))
        }
    }
}

/// The text of a malformed record as the quarantine keeps it: at most `maxQuarantinedBytes`.
func quarantineText(_ bytes: UnsafeRawBufferPointer, _ limits: UploadLimits) -> String {
    String(decoding: bytes.prefix(limits.maxQuarantinedBytes), as: UTF8.self)
}
