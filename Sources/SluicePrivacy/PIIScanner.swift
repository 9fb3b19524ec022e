#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Sluice

/// The kinds of personal data the scanner finds.
public enum PIIEntity: String, CaseIterable, Sendable, Hashable {
    case email
    case phone
    case card
    case iban
    case ipv4
    case ipv6
    case ssn

    /// The placeholder of the `replace` operator: `<EMAIL>`.
    public var placeholder: String { "<\(rawValue.uppercased())>" }
}

/// One piece of personal data in a string: its kind and its UTF-8 byte range.
public struct PIIMatch: Equatable, Sendable {
    public var entity: PIIEntity
    public var range: Range<Int>

    public init(_ entity: PIIEntity, _ range: Range<Int>) {
        self.entity = entity
        self.range = range
    }
}

/// Finds e-mail addresses, phone numbers (E.164 and common national forms), card numbers (only
/// Luhn-valid), IBANs (only mod-97-valid), IPv4 and IPv6 addresses and US social security
/// numbers in free text, in one pass over the UTF-8 bytes per kind, without regular
/// expressions. A string without an `@`, a digit or a `:` is answered at once.
///
/// Where candidates overlap, the first kind in this order wins: e-mail, IBAN, IPv6, SSN, card,
/// IPv4, phone. Numbers must stand alone: a digit run glued to letters (`A1234…`, `…42px`) or
/// an ISO 8601 date-time is not personal data.
public struct PIIScanner: Sendable {
    public let entities: Set<PIIEntity>

    public init(entities: Set<PIIEntity> = Set(PIIEntity.allCases)) {
        self.entities = entities
    }

    public func matches(in text: String) -> [PIIMatch] {
        var utf8 = text.utf8
        if let found = utf8.withContiguousStorageIfAvailable({ matches(in: $0) }) { return found }
        var copy = text
        copy.makeContiguousUTF8()
        utf8 = copy.utf8
        return utf8.withContiguousStorageIfAvailable { matches(in: $0) } ?? []
    }

    public func matches(in bytes: UnsafeBufferPointer<UInt8>) -> [PIIMatch] {
        var hasAt = false, hasDigit = false, hasColon = false
        for byte in bytes {
            if byte == UInt8(ascii: "@") { hasAt = true } else if byte &- 48 < 10 { hasDigit = true } else if byte == UInt8(ascii: ":") { hasColon = true }
        }
        guard hasAt || hasDigit || hasColon else { return [] }
        var found: [PIIMatch] = []
        /// Adds the candidates (in order, not overlapping one another, as each kind's scan
        /// answers them) that overlap nothing found before; `found` stays in order, and each
        /// candidate is checked against its neighbours there: a merge, linear in the matches
        /// (a check against every match found made 130,000 addresses quadratic).
        func take(_ candidates: [PIIMatch]) {
            guard !candidates.isEmpty else { return }
            var merged: [PIIMatch] = []
            merged.reserveCapacity(found.count + candidates.count)
            var next = 0  // the first of `found` not yet in `merged`
            for candidate in candidates {
                while next < found.count, found[next].range.lowerBound < candidate.range.lowerBound {
                    merged.append(found[next])
                    next += 1
                }
                if let before = merged.last, before.range.overlaps(candidate.range) { continue }
                if next < found.count, found[next].range.overlaps(candidate.range) { continue }
                merged.append(candidate)
            }
            merged.append(contentsOf: found[next...])
            found = merged
        }
        if hasAt && entities.contains(.email) { take(Self.emails(bytes)) }
        if hasDigit && entities.contains(.iban) { take(Self.ibans(bytes)) }
        if hasColon && entities.contains(.ipv6) { take(Self.ipv6s(bytes)) }
        if hasDigit { take(numbers(bytes)) }
        return found.sorted { $0.range.lowerBound < $1.range.lowerBound }
    }

    // MARK: Character classes

    static func isDigit(_ b: UInt8) -> Bool { b &- 48 < 10 }
    static func isUpper(_ b: UInt8) -> Bool { b &- 65 < 26 }
    static func isLower(_ b: UInt8) -> Bool { b &- 97 < 26 }
    static func isAlpha(_ b: UInt8) -> Bool { isUpper(b) || isLower(b) }
    static func isAlnum(_ b: UInt8) -> Bool { isDigit(b) || isAlpha(b) }
    static func isHex(_ b: UInt8) -> Bool { isDigit(b) || b &- 65 < 6 || b &- 97 < 6 }
    /// Bytes that glue a token to its neighbour: letters, digits and non-ASCII (letters of other scripts).
    static func isWordByte(_ b: UInt8) -> Bool { isAlnum(b) || b >= 0x80 || b == UInt8(ascii: "_") }

    // MARK: E-mail

    static func isLocalByte(_ b: UInt8) -> Bool {
        isAlnum(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "%") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
    }

    static func emails(_ s: UnsafeBufferPointer<UInt8>) -> [PIIMatch] {
        var found: [PIIMatch] = []
        var i = 0
        while i < s.count {
            guard s[i] == UInt8(ascii: "@") else { i += 1; continue }
            var start = i
            while start > 0, isLocalByte(s[start - 1]) { start -= 1 }
            while start < i, s[start] == UInt8(ascii: ".") { start += 1 }  // a local part does not start with a dot
            var end = i + 1
            while end < s.count, isAlnum(s[end]) || s[end] == UInt8(ascii: ".") || s[end] == UInt8(ascii: "-") { end += 1 }
            while end > i + 1, s[end - 1] == UInt8(ascii: ".") || s[end - 1] == UInt8(ascii: "-") { end -= 1 }
            // The domain needs a dot and a final label of two or more letters.
            var lastDot = -1
            for k in (i + 1)..<max(i + 1, end) where s[k] == UInt8(ascii: ".") { lastDot = k }
            if start < i, lastDot > i + 1, end - lastDot - 1 >= 2, ((lastDot + 1)..<end).allSatisfy({ isAlpha(s[$0]) }) {
                found.append(PIIMatch(.email, start..<end))
                i = end
            } else {
                i += 1
            }
        }
        return found
    }

    // MARK: IBAN

    /// Two capital letters, two check digits and 11 to 30 letters or digits, optionally in
    /// groups separated by single spaces; the longest such run (ending at a group boundary)
    /// whose mod-97 checksum is 1.
    static func ibans(_ s: UnsafeBufferPointer<UInt8>) -> [PIIMatch] {
        var found: [PIIMatch] = []
        var i = 0
        while i + 4 <= s.count {
            guard isUpper(s[i]), isUpper(s[i + 1]), isDigit(s[i + 2]), isDigit(s[i + 3]), i == 0 || !isWordByte(s[i - 1]) else { i += 1; continue }
            var characters = 0, k = i
            var ends: [Int] = []  // byte offsets where a group ends
            while k < s.count, characters < 34 {
                if isUpper(s[k]) || isDigit(s[k]) {
                    characters += 1
                    k += 1
                    if k == s.count || !(isUpper(s[k]) || isDigit(s[k])) { ends.append(k) }
                } else if s[k] == UInt8(ascii: " "), k + 1 < s.count, isUpper(s[k + 1]) || isDigit(s[k + 1]) {
                    k += 1
                } else {
                    break
                }
            }
            var matched = false
            for end in ends.reversed() where end == s.count || !isWordByte(s[end]) {
                let characters = (i..<end).filter { s[$0] != UInt8(ascii: " ") }.map { s[$0] }
                if characters.count >= 15, characters.count <= 34, ibanChecksumIsValid(characters) {
                    found.append(PIIMatch(.iban, i..<end))
                    i = end
                    matched = true
                    break
                }
            }
            if !matched { i += 1 }
        }
        return found
    }

    /// ISO 13616: the first four characters moved to the end, letters as 10…35, mod 97 is 1.
    static func ibanChecksumIsValid(_ characters: [UInt8]) -> Bool {
        var remainder = 0
        for c in characters[4...] + characters[..<4] {
            if isDigit(c) {
                remainder = (remainder * 10 + Int(c - 48)) % 97
            } else if isUpper(c) {
                remainder = (remainder * 100 + Int(c - 65 + 10)) % 97
            } else {
                return false
            }
        }
        return remainder == 1
    }

    // MARK: IPv6

    static func ipv6s(_ s: UnsafeBufferPointer<UInt8>) -> [PIIMatch] {
        var found: [PIIMatch] = []
        var i = 0
        while i < s.count {
            guard isHex(s[i]) || s[i] == UInt8(ascii: ":"), i == 0 || !(isWordByte(s[i - 1]) || s[i - 1] == UInt8(ascii: ":") || s[i - 1] == UInt8(ascii: ".")) else {
                i += 1
                continue
            }
            var end = i, colons = 0
            while end < s.count, isHex(s[end]) || s[end] == UInt8(ascii: ":") || s[end] == UInt8(ascii: ".") {
                if s[end] == UInt8(ascii: ":") { colons += 1 }
                end += 1
            }
            // A sentence may end right after the address.
            while end > i, s[end - 1] == UInt8(ascii: ".") || (s[end - 1] == UInt8(ascii: ":") && !(end - 2 >= i && s[end - 2] == UInt8(ascii: ":"))) {
                if s[end - 1] == UInt8(ascii: ":") { colons -= 1 }
                end -= 1
            }
            if colons >= 2, end - i <= 45, end == s.count || !isWordByte(s[end]), isIPv6(s, i..<end) {
                found.append(PIIMatch(.ipv6, i..<end))
                i = end
            } else {
                i = max(end, i + 1)
            }
        }
        return found
    }

    static func isIPv6(_ s: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        var text = [CChar](repeating: 0, count: range.count + 1)
        for (offset, index) in range.enumerated() { text[offset] = CChar(bitPattern: s[index]) }
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    // MARK: Numbers: SSN, card, IPv4, phone

    static func isNumberSeparator(_ b: UInt8) -> Bool {
        b == UInt8(ascii: " ") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "(") || b == UInt8(ascii: ")")
    }

    /// Runs of digits joined by at most two separators (space, `-`, `.`, parentheses), optionally
    /// led by `+` or `(`, standing alone; each classified as a whole.
    func numbers(_ s: UnsafeBufferPointer<UInt8>) -> [PIIMatch] {
        var found: [PIIMatch] = []
        var i = 0
        while i < s.count {
            let lead = s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "(")
            guard Self.isDigit(s[i]) || (lead && i + 1 < s.count && Self.isDigit(s[i + 1])) else { i += 1; continue }
            if i > 0, Self.isWordByte(s[i - 1]) || (!lead && (s[i - 1] == UInt8(ascii: ".") || s[i - 1] == UInt8(ascii: "+")))
                || (i > 1 && s[i - 1] == UInt8(ascii: "-") && Self.isWordByte(s[i - 2])) {
                // Glued to a word, a later group of a hyphenated token (`ab12-5551234567`, a
                // UUID's), or the tail of a decimal: skip the whole run.
                i += 1
                while i < s.count, Self.isDigit(s[i]) { i += 1 }
                continue
            }
            let start = i
            var end = lead ? i + 1 : i
            while true {
                while end < s.count, Self.isDigit(s[end]) { end += 1 }
                var k = end
                while k < s.count, k - end < 2, Self.isNumberSeparator(s[k]) { k += 1 }
                if k > end, k < s.count, Self.isDigit(s[k]) { end = k } else { break }
            }
            // Glued to what follows: a letter or digit, a decimal's fraction, a hyphen and a
            // letter (`84294841-2216-8133-fdfb-…`: a UUID's groups are one identifier), or a colon
            // and a digit (`2026-01-01 10:00:00`: a date and the hour of a time).
            let glued = end < s.count && (Self.isWordByte(s[end])
                || (s[end] == UInt8(ascii: ".") && end + 1 < s.count && Self.isDigit(s[end + 1]))
                || (s[end] == UInt8(ascii: "-") && end + 1 < s.count && Self.isWordByte(s[end + 1]))
                || (s[end] == UInt8(ascii: ":") && end + 1 < s.count && Self.isDigit(s[end + 1])))
            if !glued, let entity = classify(s, start..<end) {
                found.append(PIIMatch(entity, start..<end))
            }
            i = max(end, start + 1)
        }
        return found
    }

    func classify(_ s: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> PIIEntity? {
        var digits: [UInt8] = []
        var groups: [Int] = [], separators: [UInt8] = []
        var run = 0
        for index in range {
            let b = s[index]
            if Self.isDigit(b) {
                digits.append(b - 48)
                run += 1
            } else {
                if run > 0 { groups.append(run) }
                run = 0
                if b != UInt8(ascii: "+") { separators.append(b) }
            }
        }
        if run > 0 { groups.append(run) }
        let plus = s[range.lowerBound] == UInt8(ascii: "+")
        let only = Set(separators)
        if entities.contains(.ssn), !plus, groups == [3, 2, 4], separators == Array("--".utf8) {
            let area = Int(digits[0]) * 100 + Int(digits[1]) * 10 + Int(digits[2])
            let group = Int(digits[3]) * 10 + Int(digits[4])
            let serial = digits[5...].reduce(0) { $0 * 10 + Int($1) }
            if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 { return .ssn }
        }
        if entities.contains(.card), !plus, (13...19).contains(digits.count), only.isSubset(of: [UInt8(ascii: " "), UInt8(ascii: "-")]),
           separators.count < 2 || only.count == 1, Self.luhnIsValid(digits) {
            return .card
        }
        if entities.contains(.ipv4), !plus, groups.count == 4, separators == Array("...".utf8), groups.allSatisfy({ $0 <= 3 }) {
            var octets: [Int] = []
            var value = 0, index = 0
            for length in groups {
                value = 0
                for _ in 0..<length { value = value * 10 + Int(digits[index]); index += 1 }
                octets.append(value)
            }
            if octets.allSatisfy({ $0 <= 255 }) { return .ipv4 }
            return nil
        }
        if entities.contains(.phone) {
            if plus {
                // E.164: a country code and subscriber number, 8 to 15 digits.
                if (8...15).contains(digits.count) && digits[0] != 0 { return .phone }
            } else if !separators.isEmpty, groups.count >= 2, groups.count <= 5,
                      !(only == [UInt8(ascii: ".")] && (groups.count == 4 || groups.count == 2)) {
                // Dots alone in two groups are a decimal (`31.95376472`, a latitude), in four an
                // IPv4 shape; a phone written with dots has three groups (555.123.4567).
                // National forms: 10 digits (NANP: (555) 123-4567, 555-123-4567, 555.123.4567),
                // 11 with a leading 1, or 10 to 11 with a trunk 0 (020 7946 0958, 030 12345678).
                if digits.count == 10 && digits[0] != 0 && digits[0] != 1 { return .phone }
                if digits.count == 11 && digits[0] == 1 { return .phone }
                if (10...11).contains(digits.count) && digits[0] == 0 && digits[1] != 0 { return .phone }
            }
        }
        return nil
    }

    /// The kind of personal data a JSON number is, from its decimal digits alone (values 0–9,
    /// the sign and any fraction already left out): numbers carry no separators, so the rules
    /// are narrower than for text, to spare counters, amounts and timestamps.
    /// - card: 13 to 19 digits, Luhn-valid, starting with 2–6 (the issuers of payment cards;
    ///   a leading 1 is left out so that epoch times in milliseconds or finer, which start with 1
    ///   until 2286 and pass Luhn one time in ten, are never cards);
    /// - phone: 10 digits of the North American plan (`NXXNXXXXXX`, N 2–9), 11 digits `1` and
    ///   such a number, or 11 to 15 digits starting with 2–9 (E.164 written without its `+`).
    public func entity(ofNumberDigits digits: [UInt8]) -> PIIEntity? {
        guard let first = digits.first else { return nil }
        if entities.contains(.card), (13...19).contains(digits.count), (2...6).contains(first), Self.luhnIsValid(digits) {
            return .card
        }
        if entities.contains(.phone) {
            func plan(_ at: Int) -> Bool { digits[at] >= 2 && digits[at + 3] >= 2 }
            if digits.count == 10 && plan(0) { return .phone }
            if digits.count == 11 && first == 1 && plan(1) { return .phone }
            if (11...15).contains(digits.count) && first >= 2 { return .phone }
        }
        return nil
    }

    static func luhnIsValid(_ digits: [UInt8]) -> Bool {
        var sum = 0
        for (position, digit) in digits.reversed().enumerated() {
            var value = Int(digit)
            if position % 2 == 1 {
                value *= 2
                if value > 9 { value -= 9 }
            }
            sum += value
        }
        return sum % 10 == 0
    }
}
