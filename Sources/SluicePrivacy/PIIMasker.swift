import Sluice

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

/// Applies an operator to every piece of personal data the scanner finds, in any string, object
/// key or number at any depth of a JSON value.
///
/// A number that is a card or phone number (``PIIScanner/entity(ofNumberDigits:)``) becomes the
/// string the operator makes of its digits (`4111111111111111` → `"************1111"` with
/// `mask`, `"<CARD>"` with `replace`, `"<CARD:…>"` with `pseudonym`, `""` with `redact`). An
/// object key is masked like a string; when a masked key meets a key the object already holds
/// (or another masked key), it gets `~2`, `~3`, … (the first free one, in member order): keys
/// stay unique and the outcome depends only on the object.
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
            append(bytes[match.range], as: match.entity, to: &output)
            position = match.range.upperBound
        }
        output += bytes[position...]
        return String(decoding: output, as: UTF8.self)
    }

    /// What the entity's operator makes of `found`, appended to `output`.
    func append(_ found: some Collection<UInt8>, as entity: PIIEntity, to output: inout [UInt8]) {
        switch operators[entity] ?? .replace {
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
            output += Array(entity.placeholder.utf8)
        case .pseudonym:
            output += Array("<\(entity.rawValue.uppercased()):".utf8)
            output += Self.letters(HMACSHA256.authenticationCode(for: Array(entity.rawValue.utf8) + [0] + Array(found), key: key).prefix(8))
            output.append(UInt8(ascii: ">"))
        }
    }

    /// The masked string of a number that is a card or phone number, or `nil` for any other
    /// number. Integers (and doubles that hold one below 10^19) are judged by the decimal
    /// digits of their magnitude.
    func masked(number value: JSONValue) -> String? {
        let magnitude: UInt64
        switch value {
        case .int(let integer):
            magnitude = integer.magnitude
        case .double(let double) where double.rounded() == double && double.magnitude < 1e19:
            magnitude = UInt64(double.magnitude)
        default:
            return nil
        }
        let digits = Array(String(magnitude).utf8)
        guard let entity = scanner.entity(ofNumberDigits: digits.map { $0 - 48 }), operators[entity] != nil else { return nil }
        var output: [UInt8] = []
        append(digits, as: entity, to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// `value` with every string, object key and number masked.
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
            var members: [(key: String, value: JSONValue)]?
            var maskedKeys: [Int] = []
            for (index, (key, member)) in object.enumerated() {
                let newKey = masked(key), newMember = masked(member)
                guard newKey != nil || newMember != nil else { continue }
                if members == nil { members = Array(object) }
                if let newKey {
                    members![index].key = newKey
                    maskedKeys.append(index)
                }
                if let newMember { members![index].value = newMember }
            }
            guard var members else { return nil }
            if !maskedKeys.isEmpty { Self.makeKeysUnique(&members, masked: maskedKeys) }
            return .object(JSONObject(uncheckedMembers: members))
        case .int, .double:
            return masked(number: value).map(JSONValue.string)
        default:
            return nil
        }
    }

    /// `keys` (a header's column names, say) masked like an object's keys: unique if they were.
    public func maskKeys(_ keys: [String]) -> [String] {
        var members = keys.map { (key: $0, value: JSONValue.null) }
        var maskedKeys: [Int] = []
        for index in members.indices {
            guard let newKey = masked(members[index].key) else { continue }
            members[index].key = newKey
            maskedKeys.append(index)
        }
        if !maskedKeys.isEmpty { Self.makeKeysUnique(&members, masked: maskedKeys) }
        return members.map(\.key)
    }

    /// Gives each masked key (`masked`, member indices in order) that meets a key the object
    /// holds, or an earlier masked key, the first free `~2`, `~3`, … suffix. Keys left as they
    /// were are unique already (the parser refuses duplicates).
    static func makeKeysUnique(_ members: inout [(key: String, value: JSONValue)], masked: [Int]) {
        let maskedSet = Set(masked)
        var taken = Set<String>()
        for index in members.indices where !maskedSet.contains(index) { taken.insert(members[index].key) }
        var nextSuffix: [String: Int] = [:]
        for index in masked {
            let base = members[index].key
            var key = base, suffix = nextSuffix[base] ?? 2
            while taken.contains(key) {
                key = "\(base)~\(suffix)"
                suffix += 1
            }
            nextSuffix[base] = suffix
            taken.insert(key)
            members[index].key = key
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
