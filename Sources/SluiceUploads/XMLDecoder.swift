import Sluice

/// XML of the shape `<events><event>…</event>…</events>`, decoded event by event as the body
/// arrives. Each child of the root element is one event: its child elements become members
/// (repeated names become arrays, attributes `@name` members), text-only elements strings.
///
/// The body must be well-formed: a mismatched tag, a stray `<`, an unknown entity or a body
/// that ends early is an ``UploadError`` with the byte offset. A document type declaration is
/// refused outright (`xml_dtd_refused`), so no entity can be declared, let alone expanded
/// (billion laughs, external entities). Only the five predefined entities and character
/// references are understood. An event longer than the record limit or nested deeper than the
/// depth limit is quarantined with its 1-based position.
public struct XMLDecoder: UploadDecoder {
    private struct Frame {
        var name: String
        var object = JSONObject()
        var text: [UInt8] = []
        var hasChildren = false
        /// Child names seen more than once: their member is an array.
        var repeated: Set<String> = []
    }

    private let limits: UploadLimits
    private var utf8 = UTF8Gate()
    private var pending: [UInt8] = []
    private var pendingStart = 0  // absolute offset of pending[0]
    private var stack: [Frame] = []
    private var rootName: String?
    private var rootClosed = false
    private var index = 0
    private var eventBytes = 0
    private var eventStart = 0
    private var overflow = false
    private var tooDeep = false
    /// How far the end of the unfinished markup at `pending[0]` was looked for in earlier
    /// pieces (relative to its `<`), and the attribute quote open there: the next piece goes on
    /// from there, so markup arriving in many small pieces is scanned once, not once per piece.
    private var markupScan: (checked: Int, quote: UInt8?)?

    public init(limits: UploadLimits = UploadLimits()) {
        self.limits = limits
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        var gate = utf8
        defer { utf8 = gate }
        try gate.feed(bytes) { text throws(UploadError) in try parse(text, into: &records) }
    }

    /// Decodes whole, valid characters (``UTF8Gate`` hands them over).
    private mutating func parse(_ bytes: UnsafeRawBufferPointer, into records: inout [UploadRecord]) throws(UploadError) {
        pending.append(contentsOf: bytes)
        try drain(final: false, into: &records)
    }

    public mutating func finish(into records: inout [UploadRecord]) throws(UploadError) {
        try utf8.finish()
        try drain(final: true, into: &records)
        guard rootName != nil else {
            if utf8.offset == 0 { throw UploadError(.empty, offset: 0, "the body is empty") }
            throw UploadError(.invalidXML, offset: pendingStart, "the body has no root element")
        }
        guard rootClosed else { throw UploadError(.truncated, offset: pendingStart + pending.count, "the body ends before the root element does") }
    }

    // MARK: Tokens

    private mutating func drain(final: Bool, into records: inout [UploadRecord]) throws(UploadError) {
        var cursor = 0
        defer {
            if cursor > 0 { pending.removeFirst(cursor) }
            pendingStart += cursor
        }
        while cursor < pending.count {
            if pending[cursor] != UInt8(ascii: "<") {
                // Text up to the next markup.
                var end = cursor
                while end < pending.count, pending[end] != UInt8(ascii: "<") { end += 1 }
                if end == pending.count, !final {
                    // The text may go on: hand over what is complete now (all of it but a
                    // possibly unfinished entity), so a huge text node is never held whole.
                    var safe = end
                    if let amp = pending[cursor..<end].lastIndex(of: UInt8(ascii: "&")),
                       !pending[amp..<end].contains(UInt8(ascii: ";")), end - amp <= 12 {
                        safe = amp
                    }
                    if safe > cursor { try text(cursor..<safe) }
                    cursor = safe
                    return
                }
                try text(cursor..<end)
                cursor = end
                continue
            }
            guard let end = markupEnd(from: cursor) else {
                if final { throw UploadError(.truncated, offset: pendingStart + cursor, "the body ends inside markup") }
                if pending.count - cursor > max(limits.maxRecordBytes, 65536) {
                    throw UploadError(.invalidXML, offset: pendingStart + cursor, "markup longer than the record limit")
                }
                return
            }
            try markup(cursor..<end, into: &records)
            cursor = end
        }
    }

    /// The end (exclusive) of the markup starting at `start`, or nil when it is not complete yet
    /// (then where the search stopped is kept in ``markupScan``).
    private mutating func markupEnd(from start: Int) -> Int? {
        let resume = markupScan
        markupScan = nil
        // Once 9 bytes are in, the kind of markup (`<![CDATA[` is the longest opening) is known
        // and the search may go on where it stopped; before, it starts again.
        let known = pending.count - start >= 9
        func hasPrefix(_ text: String, at i: Int) -> Bool {
            let p = Array(text.utf8)
            return i + p.count <= pending.count && Array(pending[i..<(i + p.count)]) == p
        }
        func find(_ text: String, from i: Int) -> Int? {
            let p = Array(text.utf8)
            var j = max(i, start + (resume?.checked ?? 0))
            while j + p.count <= pending.count {
                if pending[j] == p[0], Array(pending[j..<(j + p.count)]) == p { return j + p.count }
                j += 1
            }
            if known { markupScan = (j - start, nil) }
            return nil
        }
        if hasPrefix("<!--", at: start) { return find("-->", from: start + 4) }
        if hasPrefix("<![CDATA[", at: start) { return find("]]>", from: start + 9) }
        if hasPrefix("<?", at: start) { return find("?>", from: start + 2) }
        if pending.count - start < 9, Array("<![CDATA[".utf8).starts(with: pending[start...]) { return nil }
        var quote: UInt8? = resume?.quote
        var i = start + max(1, resume?.checked ?? 1)
        while i < pending.count {
            let b = pending[i]
            if let q = quote {
                if b == q { quote = nil }
            } else if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") {
                quote = b
            } else if b == UInt8(ascii: ">") {
                return i + 1
            }
            i += 1
        }
        if known { markupScan = (i - start, quote) }
        return nil
    }

    private mutating func text(_ range: Range<Int>) throws(UploadError) {
        let bytes = pending[range]
        guard var frame = stack.popLast() else {
            // Outside the root only whitespace may stand.
            if let bad = bytes.firstIndex(where: { !Self.isSpace($0) }) {
                throw UploadError(.invalidXML, offset: pendingStart + bad, "text outside the root element")
            }
            return
        }
        defer { stack.append(frame) }
        if stack.isEmpty {  // directly inside the root: only whitespace
            if let bad = bytes.firstIndex(where: { !Self.isSpace($0) }) {
                throw UploadError(.invalidXML, offset: pendingStart + bad, "text between events")
            }
            return
        }
        countEventBytes(bytes.count)
        if !overflow { frame.text.append(contentsOf: try decodeEntities(range)) } else { _ = try decodeEntities(range) }
    }

    private mutating func markup(_ range: Range<Int>, into records: inout [UploadRecord]) throws(UploadError) {
        let offset = pendingStart + range.lowerBound
        let bytes = Array(pending[range])
        if bytes.starts(with: Array("<!--".utf8)) || bytes.starts(with: Array("<?".utf8)) { return }
        if bytes.starts(with: Array("<![CDATA[".utf8)) {
            guard stack.count >= 2 else { throw UploadError(.invalidXML, offset: offset, "character data outside an event") }
            countEventBytes(bytes.count)
            if !overflow { stack[stack.count - 1].text.append(contentsOf: bytes[9..<(bytes.count - 3)]) }
            return
        }
        if bytes.starts(with: Array("<!".utf8)) {
            throw UploadError(.xmlDTDRefused, offset: offset, "document type declarations (and so entity declarations) are refused")
        }
        if bytes.count >= 2, bytes[1] == UInt8(ascii: "/") {
            try endTag(bytes, offset: offset, into: &records)
        } else {
            try startTag(bytes, offset: offset, into: &records)
        }
    }

    private mutating func startTag(_ bytes: [UInt8], offset: Int, into records: inout [UploadRecord]) throws(UploadError) {
        let selfClosing = bytes.count >= 3 && bytes[bytes.count - 2] == UInt8(ascii: "/")
        let inner = Array(bytes[1..<(bytes.count - (selfClosing ? 2 : 1))])
        let (name, attributes) = try Self.parseTag(inner, offset: offset + 1, decode: { (raw, at) throws(UploadError) in try self.decodeEntities(raw, offset: at) })
        if rootName == nil {
            guard !rootClosed else { throw UploadError(.invalidXML, offset: offset, "a second root element") }
            rootName = name
            stack.append(Frame(name: name))
            if selfClosing { stack.removeAll(); rootClosed = true }
            return
        }
        guard !stack.isEmpty else { throw UploadError(.invalidXML, offset: offset, "a second root element") }
        if stack.count == 1 {  // an event begins
            index += 1
            eventBytes = 0
            eventStart = offset
            overflow = false
            tooDeep = false
        }
        countEventBytes(bytes.count)
        if stack.count - 1 >= limits.maxDepth { tooDeep = true }
        var frame = Frame(name: name)
        for (key, value) in attributes { frame.object["@" + key] = JSONValue.string(value) }
        if stack.count > 1 { stack[stack.count - 1].hasChildren = true }
        stack.append(frame)
        if selfClosing { try close(name: name, offset: offset, into: &records) }
    }

    private mutating func endTag(_ bytes: [UInt8], offset: Int, into records: inout [UploadRecord]) throws(UploadError) {
        let name = String(decoding: bytes[2..<(bytes.count - 1)], as: UTF8.self).trimmingSpaces()
        try close(name: name, offset: offset, into: &records)
    }

    private mutating func close(name: String, offset: Int, into records: inout [UploadRecord]) throws(UploadError) {
        guard var frame = stack.popLast() else { throw UploadError(.invalidXML, offset: offset, "an end tag without a start tag") }
        guard frame.name == name else {
            throw UploadError(.invalidXML, offset: offset, "the end tag does not match the open element")
        }
        if stack.isEmpty {
            rootClosed = true
            return
        }
        let value: JSONValue
        if frame.hasChildren || !frame.object.isEmpty {
            let text = String(decoding: frame.text, as: UTF8.self)
            if text.contains(where: { !$0.isWhitespace }) { frame.object["#text"] = .string(text) }
            value = .object(frame.object)
        } else {
            value = .string(String(decoding: frame.text, as: UTF8.self))
        }
        if stack.count == 1 {  // an event ends
            if overflow || tooDeep {
                // Its text is not kept: holding it is what the limit prevents.
                records.append(.malformed(reason: overflow ? "record_too_long" : "too_deep", line: index, raw: ""))
            } else if case .object = value {
                records.append(.event(value, line: index))
            } else {
                records.append(.event(["#text": value], line: index))
            }
            return
        }
        guard !overflow, !tooDeep else { return }
        let last = stack.count - 1
        if stack[last].repeated.contains(frame.name) {
            // Appended in place: the array is taken out of its member first, so it is not
            // shared and nothing is copied (a copy per child made 100,000 children quadratic).
            stack[last].object.updateValue(forKey: frame.name, default: .array([])) { member in
                guard case .array(var items) = member else {
                    member = .array([member, value])  // not reached: a repeated name's member is an array
                    return
                }
                member = .null
                items.append(value)
                member = .array(items)
            }
        } else if let existing = stack[last].object[frame.name] {
            stack[last].object[frame.name] = .array([existing, value])
            stack[last].repeated.insert(frame.name)
        } else {
            stack[last].object[frame.name] = value
        }
    }

    private mutating func countEventBytes(_ count: Int) {
        eventBytes += count
        if eventBytes > limits.maxRecordBytes { overflow = true }
    }

    // MARK: Pieces

    private func decodeEntities(_ range: Range<Int>) throws(UploadError) -> [UInt8] {
        try decodeEntities(Array(pending[range]), offset: pendingStart + range.lowerBound)
    }

    private func decodeEntities(_ bytes: [UInt8], offset: Int) throws(UploadError) -> [UInt8] {
        guard bytes.contains(UInt8(ascii: "&")) else { return bytes }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            guard bytes[i] == UInt8(ascii: "&") else {
                output.append(bytes[i])
                i += 1
                continue
            }
            // An entity name holds no '&': `&&x;` is a bare '&' first, however the text was cut.
            guard let semicolon = bytes[i..<min(bytes.count, i + 11)].firstIndex(of: UInt8(ascii: ";")),
                  !bytes[(i + 1)..<semicolon].contains(UInt8(ascii: "&")) else {
                throw UploadError(.invalidXML, offset: offset + i, "an '&' that starts no entity")
            }
            let name = String(decoding: bytes[(i + 1)..<semicolon], as: UTF8.self)
            switch name {
            case "lt": output.append(UInt8(ascii: "<"))
            case "gt": output.append(UInt8(ascii: ">"))
            case "amp": output.append(UInt8(ascii: "&"))
            case "quot": output.append(UInt8(ascii: "\""))
            case "apos": output.append(UInt8(ascii: "'"))
            default:
                var scalar: Unicode.Scalar?
                if name.hasPrefix("#x") { scalar = UInt32(name.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init) }
                else if name.hasPrefix("#") { scalar = UInt32(name.dropFirst(1)).flatMap(Unicode.Scalar.init) }
                guard let scalar, scalar.value != 0 else {
                    throw UploadError(.invalidXML, offset: offset + i, "unknown entity (only the predefined ones are understood)")
                }
                output.append(contentsOf: String(scalar).utf8)
            }
            i = semicolon + 1
        }
        return output
    }

    private static func parseTag(_ inner: [UInt8], offset: Int,
                                 decode: ([UInt8], Int) throws(UploadError) -> [UInt8]) throws(UploadError) -> (String, [(String, String)]) {
        var i = 0
        while i < inner.count, !isSpace(inner[i]) { i += 1 }
        let name = String(decoding: inner[0..<i], as: UTF8.self)
        guard isName(name) else { throw UploadError(.invalidXML, offset: offset, "not a valid element name") }
        var attributes: [(String, String)] = []
        while true {
            while i < inner.count, isSpace(inner[i]) { i += 1 }
            guard i < inner.count else { break }
            let nameStart = i
            while i < inner.count, inner[i] != UInt8(ascii: "="), !isSpace(inner[i]) { i += 1 }
            let attribute = String(decoding: inner[nameStart..<i], as: UTF8.self)
            while i < inner.count, isSpace(inner[i]) { i += 1 }
            guard isName(attribute), i < inner.count, inner[i] == UInt8(ascii: "=") else {
                throw UploadError(.invalidXML, offset: offset + nameStart, "a malformed attribute")
            }
            i += 1
            while i < inner.count, isSpace(inner[i]) { i += 1 }
            guard i < inner.count, inner[i] == UInt8(ascii: "\"") || inner[i] == UInt8(ascii: "'") else {
                throw UploadError(.invalidXML, offset: offset + i, "an attribute value without quotes")
            }
            let quote = inner[i]
            let valueStart = i + 1
            guard let valueEnd = inner[valueStart...].firstIndex(of: quote) else {
                throw UploadError(.invalidXML, offset: offset + i, "an attribute value without its closing quote")
            }
            guard !inner[valueStart..<valueEnd].contains(UInt8(ascii: "<")) else {
                throw UploadError(.invalidXML, offset: offset + valueStart, "'<' in an attribute value")
            }
            let value = try decode(Array(inner[valueStart..<valueEnd]), offset + valueStart)
            attributes.append((attribute, String(decoding: value, as: UTF8.self)))
            i = valueEnd + 1
        }
        return (name, attributes)
    }

    private static func isName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.properties.isAlphabetic || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || $0.properties.numericType != nil || "_-.:".unicodeScalars.contains($0) }
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }
}
