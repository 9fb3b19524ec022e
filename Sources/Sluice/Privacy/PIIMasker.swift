/// What the masker does to one kind of personal data.
public enum PIIOperator: String, Sendable, CaseIterable {
    /// Every letter and digit but the last four becomes `*` (`**** **** **** 1111`).
    case mask
    /// Removed.
    case redact
    /// The kind's placeholder (`<EMAIL>`).
    case replace
    /// A keyed pseudonym, the same for the same value and key (`<EMAIL:kdjfhaopqmcnbeal>`):
    /// HMAC-SHA256 keyed by `SLUICE_PSEUDONYM_KEY`, so it cannot be reversed by dictionary
    /// without the key. Written in the letters a–p, so it never looks like a number again.
    case pseudonym
}

/// Applies an operator to every piece of personal data the scanner finds, in any string at any
/// depth of a JSON value (object keys are left as they are).
public struct PIIMasker: Sendable {
    public let scanner: PIIScanner
    public let operators: [PIIEntity: PIIOperator]
    let key: [UInt8]

    /// - Parameters:
    ///   - operators: per kind; kinds not named are not looked for.
    ///   - key: the pseudonym key (at least 16 bytes when any operator is `pseudonym`).
    public init(operators: [PIIEntity: PIIOperator], key: [UInt8]) {
        self.operators = operators
        self.key = key
        scanner = PIIScanner(entities: Set(operators.keys))
    }

    /// `text` with its personal data replaced, or `text` itself when it holds none.
    public func mask(_ text: String) -> String { masked(text) ?? text }

    /// `text` with its personal data replaced, or `nil` when it holds none.
    func masked(_ text: String) -> String? {
        let matches = scanner.matches(in: text)
        guard !matches.isEmpty else { return nil }
        let bytes = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + 16)
        var position = 0
        for match in matches {
            output += bytes[position..<match.range.lowerBound]
            let found = bytes[match.range]
            switch operators[match.entity] ?? .replace {
            case .mask:
                var keep = 4
                var masked = Array(found)
                for index in masked.indices.reversed() where PIIScanner.isAlnum(masked[index]) {
                    if keep > 0 { keep -= 1 } else { masked[index] = UInt8(ascii: "*") }
                }
                output += masked
            case .redact:
                break
            case .replace:
                output += Array(match.entity.placeholder.utf8)
            case .pseudonym:
                output += Array("<\(match.entity.rawValue.uppercased()):".utf8)
                output += Self.letters(HMACSHA256.authenticationCode(for: Array(match.entity.rawValue.utf8) + [0] + Array(found), key: key).prefix(8))
                output.append(UInt8(ascii: ">"))
            }
            position = match.range.upperBound
        }
        output += bytes[position...]
        return String(decoding: output, as: UTF8.self)
    }

    /// `value` with every string masked.
    public func mask(_ value: JSONValue) -> JSONValue { masked(value) ?? value }

    /// `value` with every string masked, or `nil` when nothing in it changed (most events hold
    /// no personal data besides the user id: nothing is copied for them).
    func masked(_ value: JSONValue) -> JSONValue? {
        switch value {
        case .string(let text):
            return masked(text).map(JSONValue.string)
        case .array(let items):
            var copy: [JSONValue]?
            for (index, item) in items.enumerated() {
                guard let changed = masked(item) else { continue }
                if copy == nil { copy = items }
                copy![index] = changed
            }
            return copy.map(JSONValue.array)
        case .object(let object):
            var copy: JSONObject?
            for (key, member) in object {
                guard let changed = masked(member) else { continue }
                if copy == nil { copy = object }
                copy![key] = changed
            }
            return copy.map(JSONValue.object)
        default:
            return nil
        }
    }

    /// A user id's pseudonym: `u_` and 32 letters a–p (128 bits of HMAC-SHA256 keyed by
    /// `SLUICE_PSEUDONYM_KEY`), the same for the same id and key, so events of one user still
    /// join.
    public func pseudonymousUserID(_ id: String) -> String {
        "u_" + String(decoding: Self.letters(HMACSHA256.authenticationCode(for: Array("user".utf8) + [0] + Array(id.utf8), key: key).prefix(16)), as: UTF8.self)
    }

    /// Whether `id` is already a pseudonym this masker writes (so it is not pseudonymised twice).
    public static func isPseudonymousUserID(_ id: String) -> Bool {
        id.utf8.count == 34 && id.hasPrefix("u_") && id.utf8.dropFirst(2).allSatisfy { $0 &- 97 < 16 }
    }

    /// Each byte as two letters a–p (its nibbles).
    static func letters(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(97 + (byte >> 4))
            text.append(97 + (byte & 15))
        }
        return text
    }
}
