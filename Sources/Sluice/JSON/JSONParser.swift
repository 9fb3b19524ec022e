/// A strict RFC 8259 JSON parser over bytes: no comments, no trailing commas, no leading
/// zeros, no NaN; invalid UTF-8, lone surrogates and control characters in strings are
/// errors; nesting deeper than `maxDepth` is an error, never a stack overflow.
public struct JSONParser: Sendable {
    /// The deepest nesting of arrays and objects accepted.
    public var maxDepth: Int

    public init(maxDepth: Int = 512) {
        self.maxDepth = maxDepth
    }

    /// Parses exactly one value, with optional whitespace around it.
    public func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSONValue {
        var reader = Reader(bytes: bytes, maxDepth: maxDepth)
        reader.skipWhitespace()
        let value = try reader.parseValue(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw JSONParseError(.trailingData, offset: reader.index) }
        return value
    }

    /// Whether `bytes` are exactly one value, with optional whitespace around it: what
    /// ``parse(_:)-(UnsafeRawBufferPointer)`` would accept, checked without building the value (no allocation
    /// but for a string's escapes). The fuzz target holds the two to the same answer.
    public func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var reader = Reader(bytes: bytes, maxDepth: maxDepth)
        reader.skipWhitespace()
        guard (try? reader.skipValue(depth: 0)) != nil else { return false }
        reader.skipWhitespace()
        return reader.index == bytes.count
    }

    /// Parses exactly one value from a byte collection.
    public func parse<C: Collection>(_ bytes: C) throws(JSONParseError) -> JSONValue where C.Element == UInt8 {
        let result: Result<JSONValue, JSONParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            do throws(JSONParseError) {
                return .success(try parse(UnsafeRawBufferPointer(buffer)))
            } catch {
                return .failure(error)
            }
        }
        if let result { return try result.get() }
        let array = Array(bytes)
        return try parse(array)
    }

    /// Parses exactly one value from a string.
    public func parse(_ string: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(string.utf8))
    }
}

private struct Reader {
    let bytes: UnsafeRawBufferPointer
    let maxDepth: Int
    var index = 0

    init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    @inline(__always) mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw JSONParseError(.unexpectedCharacter, offset: index)
        }
    }

    /// Checks the value at `index` and moves past it, as ``parseValue(depth:)`` would.
    mutating func skipValue(depth: Int) throws(JSONParseError) {
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        switch bytes[index] {
        case UInt8(ascii: "{"), UInt8(ascii: "["): try skipContainer(depth: depth + 1)
        case UInt8(ascii: "\""): try skipString()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
        default: throw JSONParseError(.unexpectedCharacter, offset: index)
        }
    }

    /// Checks the object or array at `index`, as ``parseObject(depth:)`` and ``parseArray(depth:)`` would.
    mutating func skipContainer(depth: Int) throws(JSONParseError) {
        guard depth <= maxDepth else { throw JSONParseError(.tooDeep, offset: index) }
        let object = bytes[index] == UInt8(ascii: "{")
        let close = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
        index += 1
        skipWhitespace()
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        if bytes[index] == close {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            if object {
                guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
                guard bytes[index] == UInt8(ascii: "\"") else { throw JSONParseError(.unexpectedCharacter, offset: index) }
                try skipString()
                skipWhitespace()
                guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
                guard bytes[index] == UInt8(ascii: ":") else { throw JSONParseError(.unexpectedCharacter, offset: index) }
                index += 1
                skipWhitespace()
            }
            try skipValue(depth: depth)
            skipWhitespace()
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case close:
                index += 1
                return
            default: throw JSONParseError(.unexpectedCharacter, offset: index)
            }
        }
    }

    /// Checks the string at `index`, as ``parseString()`` would.
    mutating func skipString() throws(JSONParseError) {
        index += 1  // opening quote
        var escapes: [UInt8] = []
        try scanString(into: &escapes, keeping: false)
    }

    /// Checks the number at `index`, as ``parseNumber()`` would: its grammar, and that one
    /// that is not an exact integer is finite as a double (converted only where an exponent or
    /// more than 308 digits could make it infinite).
    mutating func skipNumber() throws(JSONParseError) {
        let number = try scanNumber()
        guard number.exponent || number.integerDigits > 308 else { return }
        try number.double(in: bytes)
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let count = word.utf8CodeUnitCount
        let start = word.utf8Start
        for i in 0..<count {
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            guard bytes[index] == start[i] else { throw JSONParseError(.unexpectedCharacter, offset: index) }
            index += 1
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= maxDepth else { throw JSONParseError(.tooDeep, offset: index) }
        index += 1  // {
        var object = JSONObject()
        skipWhitespace()
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        if bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(JSONObject())
        }
        while true {
            skipWhitespace()
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            guard bytes[index] == UInt8(ascii: "\"") else { throw JSONParseError(.unexpectedCharacter, offset: index) }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            guard bytes[index] == UInt8(ascii: ":") else { throw JSONParseError(.unexpectedCharacter, offset: index) }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            // A repeated key: the last value wins, the first position is kept (found by hash
            // once the object is large, so many keys cost linear time).
            object[key] = value
            skipWhitespace()
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return .object(object)
            default: throw JSONParseError(.unexpectedCharacter, offset: index)
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= maxDepth else { throw JSONParseError(.tooDeep, offset: index) }
        index += 1  // [
        var elements: [JSONValue] = []
        skipWhitespace()
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        if bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array([])
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default: throw JSONParseError(.unexpectedCharacter, offset: index)
            }
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let number = try scanNumber()
        if number.integral, !number.overflow {
            if number.negative {
                if number.magnitude <= UInt64(Int64.max) { return .int(-Int64(number.magnitude)) }
                if number.magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
            } else if number.magnitude <= UInt64(Int64.max) {
                return .int(Int64(number.magnitude))
            }
        }
        return .double(try number.double(in: bytes))
    }

    /// A number's text, scanned: where it is and what it holds.
    struct ScannedNumber {
        var range: Range<Int>
        var negative: Bool
        /// The integer part's value (wrapped when `overflow`).
        var magnitude: UInt64
        var overflow: Bool
        var integerDigits: Int
        /// No fraction and no exponent.
        var integral: Bool
        var exponent: Bool

        /// The number as a finite double.
        @discardableResult
        func double(in bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> Double {
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
            guard let value = Double(text), value.isFinite else { throw JSONParseError(.invalidNumber, offset: range.lowerBound) }
            return value
        }
    }

    /// Moves past the number at `index`, checking its grammar.
    mutating func scanNumber() throws(JSONParseError) -> ScannedNumber {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        var magnitude: UInt64 = 0
        var overflow = false
        let first = bytes[index]
        guard first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else { throw JSONParseError(.invalidNumber, offset: index) }
        let integerStart = index
        if first == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                throw JSONParseError(.invalidNumber, offset: index)  // leading zero
            }
        } else {
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                let digit = UInt64(bytes[index] - UInt8(ascii: "0"))
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(digit)
                if o1 || o2 { overflow = true }
                magnitude = m2
                index += 1
            }
        }
        let integerDigits = index - integerStart
        var fraction = false, exponent = false
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            fraction = true
            index += 1
            try digits()
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            exponent = true
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            try digits()
        }
        return ScannedNumber(range: start..<index, negative: negative, magnitude: magnitude, overflow: overflow,
                             integerDigits: integerDigits, integral: !fraction && !exponent, exponent: exponent)
    }

    /// Moves past one or more digits.
    private mutating func digits() throws(JSONParseError) {
        let digitsStart = index
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
        guard index > digitsStart else {
            throw JSONParseError(index < bytes.count ? .invalidNumber : .unexpectedEnd, offset: index)
        }
    }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: printable ASCII without escapes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { break }
            index += 1
        }
        var output: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        try scanString(into: &output, keeping: true)
        return String(decoding: output, as: UTF8.self)
    }

    /// Moves past the rest of a string and its closing quote, checking it; appends its bytes to
    /// `output` when `keeping` (an escape is decoded into it either way).
    mutating func scanString(into output: inout [UInt8], keeping: Bool) throws(JSONParseError) {
        while true {
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                try parseEscape(into: &output)
            case 0..<0x20:
                throw JSONParseError(.invalidString, offset: index)
            case 0x20..<0x80:
                if keeping { output.append(byte) }
                index += 1
            default:
                let length = try utf8SequenceLength(at: index)
                if keeping { output.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[index..<(index + length)])) }
                index += length
            }
        }
    }

    /// Validates the multi-byte UTF-8 sequence at `position` and answers its length.
    func utf8SequenceLength(at position: Int) throws(JSONParseError) -> Int {
        let b0 = bytes[position]
        let length: Int
        var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
        switch b0 {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F  // no UTF-16 surrogates
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F  // nothing above U+10FFFF
        default: throw JSONParseError(.invalidUTF8, offset: position)
        }
        guard position + length <= bytes.count else {
            // A truncated sequence at the very end.
            for i in (position + 1)..<bytes.count where bytes[i] & 0xC0 != 0x80 {
                throw JSONParseError(.invalidUTF8, offset: i)
            }
            throw JSONParseError(.unexpectedEnd, offset: bytes.count)
        }
        let b1 = bytes[position + 1]
        guard b1 >= lower, b1 <= upper else { throw JSONParseError(.invalidUTF8, offset: position + 1) }
        for i in 2..<length where bytes[position + i] & 0xC0 != 0x80 {
            throw JSONParseError(.invalidUTF8, offset: position + i)
        }
        return length
    }

    mutating func parseEscape(into output: inout [UInt8]) throws(JSONParseError) {
        let escapeStart = index
        index += 1
        guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""): output.append(0x22)
        case UInt8(ascii: "\\"): output.append(0x5C)
        case UInt8(ascii: "/"): output.append(0x2F)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(0x0A)
        case UInt8(ascii: "r"): output.append(0x0D)
        case UInt8(ascii: "t"): output.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xD800...0xDBFF).contains(scalar) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw JSONParseError(.invalidEscape, offset: escapeStart)
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw JSONParseError(.invalidEscape, offset: escapeStart) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw JSONParseError(.invalidEscape, offset: escapeStart)
            }
            output.append(contentsOf: Unicode.UTF8.encode(Unicode.Scalar(scalar)!)!)
        default:
            throw JSONParseError(.invalidEscape, offset: escapeStart)
        }
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard index < bytes.count else { throw JSONParseError(.unexpectedEnd, offset: index) }
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw JSONParseError(.invalidEscape, offset: index)
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}
