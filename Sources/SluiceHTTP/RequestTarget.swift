/// The one spelling of a request target that access is checked on. A router that drops empty
/// segments (`//api/v1/audit` reaches `/api/v1/audit`) and a check on the raw path must never see
/// two different paths: the gateway rewrites every target to its canonical form before any
/// check, or refuses it, and hands on exactly what it checked.
public enum RequestTarget {
    /// Why a target has no canonical form.
    public enum Refusal: String, Error, Sendable {
        /// Not a path (`*`, an absolute URL).
        case notAPath = "not_a_path"
        /// `..` as a segment: where it leads is the server's choice, not the caller's.
        case dotDotSegment = "dot_dot_segment"
        /// `%2F`, `%5C`, `%2E` or `%00`: an encoded separator, dot or NUL that one reader decodes and another does not.
        case encodedSeparator = "encoded_separator"
        /// A backslash, a control character or a space.
        case forbiddenCharacter = "forbidden_character"
    }

    /// `target` (path and optional query) with empty and `.` segments and a trailing slash
    /// removed; the query is kept as sent.
    /// - Throws: ``Refusal`` when the path holds a `..` segment, an encoded separator, dot or NUL,
    ///   a backslash or a control character, or is not a path at all.
    public static func canonical(_ target: String) throws(Refusal) -> String {
        let bytes = Array(target.utf8)
        let queryStart = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.count
        let path = bytes[..<queryStart]
        guard path.first == UInt8(ascii: "/") else { throw .notAPath }
        var index = path.startIndex
        while index < path.endIndex {
            let byte = path[index]
            if byte < 0x21 || byte == 0x7F || byte == UInt8(ascii: "\\") { throw .forbiddenCharacter }
            if byte == UInt8(ascii: "%") {
                guard index + 2 < path.endIndex, let high = hex(path[index + 1]), let low = hex(path[index + 2]) else {
                    throw .encodedSeparator
                }
                let decoded = high << 4 | low
                if decoded == UInt8(ascii: "/") || decoded == UInt8(ascii: "\\") || decoded == UInt8(ascii: ".") || decoded == 0 {
                    throw .encodedSeparator
                }
                index += 3
                continue
            }
            index += 1
        }
        var segments: [ArraySlice<UInt8>] = []
        for segment in path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if segment.elementsEqual([UInt8(ascii: ".")]) { continue }
            if segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { throw .dotDotSegment }
            segments.append(segment)
        }
        var result = [UInt8]()
        result.reserveCapacity(bytes.count)
        for segment in segments {
            result.append(UInt8(ascii: "/"))
            result += segment
        }
        if result.isEmpty { result.append(UInt8(ascii: "/")) }
        result += bytes[queryStart...]
        return String(decoding: result, as: UTF8.self)
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
