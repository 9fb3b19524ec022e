import Sluice

/// A JSON array of objects, decoded element by element as the body arrives. The body must be
/// one well-formed array: a syntax error or a truncated body is an ``UploadError`` with the
/// byte offset. An element that is valid JSON but not an object, or longer than the record
/// limit, is quarantined with its 1-based position as its line.
public struct JSONArrayDecoder: UploadDecoder {
    private enum Phase { case start, firstElement, element, done }

    private let limits: UploadLimits
    private let parser: JSONParser
    private var utf8 = UTF8Gate()
    private var phase = Phase.start
    private var position = 0  // absolute offset of the next byte
    private var element: [UInt8] = []
    private var elementStart = 0
    private var elementOverflow = false
    private var index = 0
    private var depth = 0
    private var inString = false
    private var escaped = false

    public init(limits: UploadLimits = UploadLimits()) {
        self.limits = limits
        parser = JSONParser(maxDepth: limits.maxDepth + 1)
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        var gate = utf8
        defer { utf8 = gate }
        try gate.feed(bytes) { text throws(UploadError) in try parse(text, into: &records) }
    }

    /// Decodes whole, valid characters (``UTF8Gate`` hands them over).
    private mutating func parse(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let offset = position + i
            switch phase {
            case .start:
                if isSpace(b) || (offset < 3 && [0xEF, 0xBB, 0xBF][offset] == b) {  // whitespace, BOM
                } else if b == UInt8(ascii: "[") {
                    phase = .firstElement
                } else {
                    throw UploadError(.notAnArray, offset: offset, "the body is not a JSON array")
                }
            case .firstElement where isSpace(b):
                break
            case .firstElement where b == UInt8(ascii: "]"):
                phase = .done
            case .firstElement, .element:
                // Scan one element up to the `,` or `]` that ends it at depth 0.
                phase = .element
                let start = i
                var end = i
                var closes: UInt8? = nil
                while end < bytes.count {
                    let c = bytes[end]
                    if inString {
                        if escaped { escaped = false }
                        else if c == UInt8(ascii: "\\") { escaped = true }
                        else if c == UInt8(ascii: "\"") { inString = false }
                    } else if c == UInt8(ascii: "\"") {
                        inString = true
                    } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                        depth += 1
                        guard depth <= limits.maxDepth else {
                            throw UploadError(.tooDeep, offset: position + end, "nesting deeper than \(limits.maxDepth) levels")
                        }
                    } else if c == UInt8(ascii: "}") || (c == UInt8(ascii: "]") && depth > 0) {
                        depth -= 1
                        guard depth >= 0 else { throw UploadError(.invalidJSON, offset: position + end, "unbalanced brackets") }
                    } else if depth == 0, c == UInt8(ascii: ",") || c == UInt8(ascii: "]") {
                        closes = c
                        break
                    }
                    end += 1
                }
                appendToElement(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), startingAt: position + start)
                guard let closes else {
                    i = end
                    continue
                }
                try finishElement(endOffset: position + end, into: &records)
                phase = closes == UInt8(ascii: "]") ? .done : .element
                i = end
            case .done:
                guard isSpace(b) else { throw UploadError(.invalidJSON, offset: offset, "data after the end of the array") }
            }
            i += 1
        }
        position += bytes.count
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        try utf8.finish()
        guard phase == .done else {
            throw UploadError(phase == .start ? .empty : .truncated, offset: position,
                              phase == .start ? "the body is empty" : "the body ends before the array does")
        }
    }

    private mutating func appendToElement(_ piece: UnsafeRawBufferPointer, startingAt offset: Int) {
        if element.isEmpty, !elementOverflow {
            // Leading whitespace does not count toward the limit or the element's start.
            let trimmed = piece.drop { isSpace($0) }
            guard !trimmed.isEmpty else { return }
            elementStart = offset + (piece.count - trimmed.count)
            appendBounded(UnsafeRawBufferPointer(rebasing: trimmed))
            return
        }
        appendBounded(piece)
    }

    private mutating func appendBounded(_ piece: UnsafeRawBufferPointer) {
        guard !elementOverflow else { return }
        if element.count + piece.count > limits.maxRecordBytes {
            element.append(contentsOf: piece.prefix(max(0, limits.maxQuarantinedBytes - element.count)))
            elementOverflow = true
        } else {
            element.append(contentsOf: piece)
        }
    }

    private mutating func finishElement(endOffset: Int, into records: inout [UploadRecord]) throws(UploadError) {
        defer {
            element.removeAll(keepingCapacity: element.count <= 65536)
            elementOverflow = false
            inString = false
            escaped = false
        }
        index += 1
        if elementOverflow {
            records.append(.malformed(reason: "record_too_long", line: index,
                                      raw: String(decoding: element.prefix(limits.maxQuarantinedBytes), as: UTF8.self)))
            return
        }
        guard !element.isEmpty else {
            throw UploadError(.invalidJSON, offset: endOffset, "a value is missing before this comma or bracket")
        }
        let value: JSONValue
        do {
            value = try parser.parse(element)
        } catch {
            throw UploadError(.invalidJSON, offset: elementStart + error.offset, "element \(index) is not valid JSON (\(error.code.rawValue))")
        }
        guard case .object = value else {
            let raw = element.withUnsafeBytes { quarantineText($0, limits) }
            records.append(.malformed(reason: "not_an_object", line: index, raw: raw))
            return
        }
        records.append(.event(value, line: index))
    }

    private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }
}
