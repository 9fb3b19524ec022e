extension JSONValue {
    /// Appends the value as compact JSON (RFC 8259): keys in stored order, strings escaped
    /// (`"`, `\`, control characters), everything else as raw UTF-8; non-finite doubles as `null`.
    public func write(into buffer: inout [UInt8]) {
        switch self {
        case .null: buffer.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(let b): buffer.append(contentsOf: b ? Array("true".utf8) : Array("false".utf8))
        case .int(let i): buffer.append(contentsOf: String(i).utf8)
        case .double(let d):
            if d.isFinite { buffer.append(contentsOf: d.description.utf8) } else { buffer.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]) }
        case .string(let s): Self.writeString(s, into: &buffer)
        case .array(let elements):
            buffer.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { buffer.append(UInt8(ascii: ",")) }
                first = false
                element.write(into: &buffer)
            }
            buffer.append(UInt8(ascii: "]"))
        case .object(let object):
            buffer.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in object {
                if !first { buffer.append(UInt8(ascii: ",")) }
                first = false
                Self.writeString(key, into: &buffer)
                buffer.append(UInt8(ascii: ":"))
                value.write(into: &buffer)
            }
            buffer.append(UInt8(ascii: "}"))
        }
    }

    /// The value as compact JSON bytes.
    public var serializedBytes: [UInt8] {
        var buffer: [UInt8] = []
        write(into: &buffer)
        return buffer
    }

    /// The value as a compact JSON string.
    public var serializedString: String {
        String(decoding: serializedBytes, as: UTF8.self)
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `string` as a JSON string: quoted, with `"`, `\\` and control characters escaped.
    public static func writeString(_ string: String, into buffer: inout [UInt8]) {
        var string = string
        string.withUTF8 { writeString(utf8: UnsafeRawBufferPointer($0), into: &buffer) }
    }

    /// Appends the text `bytes` (valid UTF-8) as a JSON string, as ``writeString(_:into:)`` does.
    public static func writeString(utf8 bytes: UnsafeRawBufferPointer, into buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "\""))
        var runStart = 0
        for index in 0..<bytes.count {
            let byte = bytes[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            if runStart < index { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index])) }
            runStart = index + 1
            buffer.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): buffer.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\"))
            case 0x0A: buffer.append(UInt8(ascii: "n"))
            case 0x0D: buffer.append(UInt8(ascii: "r"))
            case 0x09: buffer.append(UInt8(ascii: "t"))
            case 0x08: buffer.append(UInt8(ascii: "b"))
            case 0x0C: buffer.append(UInt8(ascii: "f"))
            default:
                buffer.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                           hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            }
        }
        if runStart < bytes.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart...])) }
        buffer.append(UInt8(ascii: "\""))
    }
}
