/// A JSON value. Numbers that are integers fitting in 64 bits stay exact (`int`); every other
/// number is a `double`. Objects keep their keys in input order.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The member `key` of an object; `nil` for other values or a missing key.
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The element at `index` of an array; `nil` for other values or out of range.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let array) = self, array.indices.contains(index) { return array[index] }
        return nil
    }

    /// The value at a dot-separated path of object keys (`metadata.event_id`).
    public func value(atPath path: String) -> JSONValue? { value(at: JSONPath(path)) }

    /// The value at `path`; `nil` when a key is missing or a step is not an object.
    public func value(at path: JSONPath) -> JSONValue? {
        var current = self
        for key in path.keys {
            guard case .object(let object) = current, let next = object[key] else { return nil }
            current = next
        }
        return current
    }

    /// Sets the value at a dot-separated path, creating objects on the way (replacing any
    /// non-object found there). `nil` removes the last key.
    public mutating func setValue(_ value: JSONValue?, atPath path: String) {
        setValue(value, at: JSONPath(path))
    }

    /// Sets the value at `path`, creating objects on the way (replacing any non-object found
    /// there). `nil` removes the last key, and changes nothing when the path does not exist.
    /// Mutates in place: no object on the path is copied.
    public mutating func setValue(_ value: JSONValue?, at path: JSONPath) {
        Self.set(&self, keys: path.keys[...], value: value)
    }

    private static func set(_ target: inout JSONValue, keys: ArraySlice<String>, value: JSONValue?) {
        guard let key = keys.first else {
            target = value ?? .null
            return
        }
        var object: JSONObject
        if case .object(let existing) = target {
            object = existing
        } else {
            guard value != nil else { return }  // removing below a non-object: nothing is there
            object = JSONObject()
        }
        target = .null  // `object` is now the only reference: changing it copies nothing
        if keys.count == 1 {
            object[key] = value
        } else if value != nil || object[key] != nil {
            object.updateValue(forKey: key, default: .object(JSONObject())) { set(&$0, keys: keys.dropFirst(), value: value) }
        }
        target = .object(object)
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer of an `int`, or of a `double` with an integral value in range.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.2e18: return Int64(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool { self == .null }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
    public init(nilLiteral: ()) { self = .null }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON.
    public var description: String { serializedString }
}

/// A JSON object that keeps its keys in insertion order. A small object is searched linearly
/// (a scan of a few keys beats hashing them); once it holds more than ``indexedAbove`` members
/// it also keeps a hash table from key to position, so that a lookup, an insert or a replaced
/// value costs O(1) however many keys an event sends (100,000 keys in one object must not cost
/// 100,000² comparisons). Removing a member costs O(members after it).
///
/// Equality ignores key order (two objects with the same members are equal).
public struct JSONObject: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (key: String, value: JSONValue)

    /// Above this many members the object keeps ``positions``.
    static let indexedAbove = 16

    private var members: [(key: String, value: JSONValue)]
    /// The position of each key in `members`; nil while the object is small.
    private var positions: [String: Int]?

    public init() { members = [] }

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        members = []
        members.reserveCapacity(elements.count)
        for (key, value) in elements { self[key] = value }
    }

    /// Takes `uncheckedMembers` without checking for repeated keys: for parsers and maskers that
    /// made them distinct already (the keys must be distinct).
    public init(uncheckedMembers: [(key: String, value: JSONValue)]) {
        members = uncheckedMembers
        if members.count > Self.indexedAbove { buildPositions() }
    }

    private mutating func buildPositions() {
        var table: [String: Int] = [:]
        table.reserveCapacity(members.count)
        for (index, member) in members.enumerated() { table[member.key] = index }
        positions = table
    }

    /// The position of `key` in `members`.
    @inline(__always) private func position(of key: String) -> Int? {
        if let positions { return positions[key] }
        for index in members.indices where members[index].key == key { return index }
        return nil
    }

    private mutating func append(_ key: String, _ value: JSONValue) {
        members.append((key, value))
        if positions != nil {
            positions![key] = members.count - 1
        } else if members.count > Self.indexedAbove {
            buildPositions()
        }
    }

    /// The value of `key`; setting `nil` removes it. A new key goes last; an existing key keeps
    /// its position.
    public subscript(key: String) -> JSONValue? {
        get {
            guard let index = position(of: key) else { return nil }
            return members[index].value
        }
        set {
            if let index = position(of: key) {
                if let newValue {
                    members[index].value = newValue
                } else {
                    members.remove(at: index)
                    if positions != nil {
                        positions![key] = nil
                        for later in index..<members.count { positions![members[later].key] = later }
                    }
                }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    /// Changes the value of `key` in place (adding `default` first when the key is missing).
    public mutating func updateValue<R>(forKey key: String, default fallback: @autoclosure () -> JSONValue,
                                        _ body: (inout JSONValue) throws -> R) rethrows -> R {
        if let index = position(of: key) { return try body(&members[index].value) }
        append(key, fallback())
        return try body(&members[members.count - 1].value)
    }

    /// Reserves room for `count` members.
    public mutating func reserveCapacity(_ count: Int) {
        members.reserveCapacity(count)
    }

    public var keys: [String] { members.map(\.key) }
    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> {
        members.makeIterator()
    }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        for member in lhs.members {
            guard let other = rhs[member.key], other == member.value else { return false }
        }
        return true
    }

    public func hash(into hasher: inout Hasher) {
        // Order-independent: combine the members' hashes commutatively.
        var combined = 0
        for member in members {
            var h = Hasher()
            h.combine(member.key)
            h.combine(member.value)
            combined = combined &+ h.finalize()
        }
        hasher.combine(members.count)
        hasher.combine(combined)
    }
}

/// A dot-separated path of object keys (`context.location.country`), split once: for rules
/// applied to every event.
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
    public let keys: [String]

    public init(_ text: String) {
        keys = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    /// The path of `keys`, in order (a key may hold a `.`).
    public init(keys: [String]) {
        self.keys = keys
    }

    public var description: String { keys.joined(separator: ".") }
}
