import Sluice

/// How validate checks the records of one dataset, built from its settings (validate's
/// `config` with the dataset's `steps.validate` on top) and its spec.
struct ValidationPlan: Sendable {
    /// What a record must look like.
    enum Shape: Sendable {
        /// DESIGN.md's event shape (``EventShapeValidator``).
        case builtin
        /// Only the rules; the id and time at these paths.
        case rules(CustomShape)
        /// The dataset's fields.
        case fields(FieldsShape)
    }

    /// `shape: rules`: the record's id and (optional) time are at these paths.
    struct CustomShape: Sendable {
        let idField: String, idPath: JSONPath
        let timeField: String?, timePath: JSONPath?

        init(idField: String, timeField: String?) {
            self.idField = idField
            idPath = JSONPath(idField)
            self.timeField = timeField
            timePath = timeField.map(JSONPath.init)
        }
    }

    static let defaultMaxEventIDBytes = 256
    /// The most `max_event_id_bytes` may be: the warehouse's primary key index takes entries of
    /// at most about 2,700 bytes (a third of a PostgreSQL page).
    static let maxEventIDBytesLimit = 2048

    let shape: Shape
    let validator: EventShapeValidator
    let dedupTTL: Duration
    let rules: [FieldRule]
    let maxEventIDBytes: Int
    /// Put before each key in its first-seen mark: keys of two datasets never collide.
    let dedupScope: String
    /// The field named in `invalid_event_id`.
    let idField: String

    /// - Parameter spec: the dataset; nil to check the function's own settings at start (the
    ///   `fields` shape is then not built).
    init(config: JSONValue, file: String, spec: DatasetSpec?) throws {
        func duration(_ key: String, _ fallback: Duration) throws -> Duration {
            guard let value = config[key] else { return fallback }
            guard case .string(let text) = value, let parsed = DurationParser.parse(text) else {
                throw ManifestError(.badDuration, file: file, key: "config.\(key)", message: "is not a duration (write e.g. 60s)")
            }
            return parsed
        }
        let maxAge = try duration("max_age", .seconds(24 * 3600))
        validator = EventShapeValidator(maxAge: maxAge, maxFutureSkew: try duration("max_future_skew", .seconds(300)))
        dedupTTL = try duration("dedup_ttl", maxAge + .seconds(3600))
        guard dedupTTL > maxAge else {
            throw ManifestError(.badValue, file: file, key: "config.dedup_ttl",
                                message: "must be longer than config.max_age, or an old duplicate could be loaded again")
        }
        if let value = config["max_event_id_bytes"] {
            guard let bytes = value.intValue, bytes >= 1, bytes <= Int64(Self.maxEventIDBytesLimit) else {
                throw ManifestError(.badValue, file: file, key: "config.max_event_id_bytes",
                                    message: "must be an integer from 1 to \(Self.maxEventIDBytesLimit) (the warehouse's key index holds no longer ids)")
            }
            maxEventIDBytes = Int(bytes)
        } else {
            maxEventIDBytes = Self.defaultMaxEventIDBytes
        }
        rules = try FieldRule.rules(from: config, file: file)
        switch config["shape"] {
        case .string("builtin")?:
            shape = .builtin
            idField = "metadata.event_id"
        case .string("rules")?:
            guard case .string(let idField)? = config["id_field"] else {
                throw ManifestError(.missingField, file: file, key: "config.id_field", message: "is required with shape: rules")
            }
            shape = .rules(CustomShape(idField: idField, timeField: config["time_field"]?.stringValue))
            self.idField = idField
        case nil, .string("fields")?:
            let fields = spec.map(FieldsShape.init)
            shape = fields.map(Shape.fields) ?? .builtin
            idField = fields?.keyFields.first ?? ""
        default:
            throw ManifestError(.badValue, file: file, key: "config.shape", message: "must be fields, builtin or rules")
        }
        dedupScope = (spec?.name ?? "") + "\u{1F}"
    }

    /// The verdict on `event` at `now`, and the record with each value read as its field's
    /// type when that changed it (`fields` shape only).
    func check(_ event: JSONValue, now: Int64) -> (EventShapeValidator.Verdict, JSONValue?) {
        var read: JSONValue?
        let verdict: EventShapeValidator.Verdict
        switch shape {
        case .builtin: verdict = validator.check(event, nowMilliseconds: now)
        case .rules(let custom): verdict = checkCustom(event, shape: custom, now: now)
        case .fields(let fields): (verdict, read) = fields.check(event, now: now, validator: validator)
        }
        switch verdict {
        case .valid(let id, _), .stale(let id):
            if !Self.isAcceptableEventID(id, maxBytes: maxEventIDBytes) { return (.malformed(reason: "invalid_event_id", field: idField), nil) }
        case .malformed:
            break
        }
        guard case .valid = verdict else { return (verdict, nil) }
        for rule in rules {
            if let reason = rule.violation(in: read ?? event) { return (.malformed(reason: reason, field: rule.field), nil) }
        }
        return (verdict, read)
    }

    /// Whether `id` may name an event: at most `maxBytes` bytes of UTF-8 and no control
    /// character (U+0000–U+001F, U+007F; PostgreSQL's text refuses U+0000, which would fail the
    /// whole load chunk). Emptiness is the shape's concern (`missing_field`). A key of several
    /// columns is checked as its values joined by U+001F, which it may hold.
    static func isAcceptableEventID(_ id: String, maxBytes: Int) -> Bool {
        var count = 0
        for byte in id.utf8 {
            count += 1
            if count > maxBytes || (byte < 0x20 && byte != 0x1F) || byte == 0x7F { return false }
        }
        return true
    }

    func checkCustom(_ event: JSONValue, shape: CustomShape, now: Int64) -> EventShapeValidator.Verdict {
        guard case .object = event else { return .malformed(reason: "wrong_type", field: "") }
        guard case .string(let id)? = event.value(at: shape.idPath), !id.isEmpty else {
            let value = event.value(at: shape.idPath)
            return .malformed(reason: value == nil || value == .null || value == .string("") ? "missing_field" : "wrong_type", field: shape.idField)
        }
        guard let timeField = shape.timeField, let timePath = shape.timePath else { return .valid(eventID: id, timestamp: now) }
        guard case .string(let text)? = event.value(at: timePath) else { return .malformed(reason: "missing_field", field: timeField) }
        guard let time = Timestamp.milliseconds(text) else { return .malformed(reason: "invalid_timestamp", field: timeField) }
        if time > now + validator.maxFutureSkew.milliseconds { return .malformed(reason: "future_timestamp", field: timeField) }
        if time < now - validator.maxAge.milliseconds { return .stale(eventID: id) }
        return .valid(eventID: id, timestamp: time)
    }
}

/// A dataset's fields as validate checks them: each in order, present when required, of its
/// type (a string that reads as the type, as CSV cells are, is taken as that value).
struct FieldsShape: Sendable {
    struct Check: Sendable {
        let path: JSONPath
        let name: String
        let type: DatasetSpec.FieldType
        let required: Bool
    }

    let checks: [Check]
    /// Indices into `checks` of the fields that load into the key columns, in key order.
    let keyIndices: [Int]
    let keyFields: [String]
    let timeIndex: Int?

    init(_ spec: DatasetSpec) {
        checks = spec.fields.map { Check(path: JSONPath($0.path), name: $0.path, type: $0.type, required: $0.required) }
        // A key column made by a transform from no field (declared columns) has no field: the
        // key is then the key columns' fields that exist.
        keyIndices = spec.key.compactMap { column in spec.fields.firstIndex { $0.column == column } }
        keyFields = keyIndices.map { spec.fields[$0].path }
        timeIndex = spec.time.flatMap { time in spec.fields.firstIndex { $0.path == time } }
    }

    func check(_ event: JSONValue, now: Int64, validator: EventShapeValidator) -> (EventShapeValidator.Verdict, JSONValue?) {
        guard case .object = event else { return (.malformed(reason: "wrong_type", field: ""), nil) }
        var read = event
        var changed = false
        var values: [JSONValue?] = Array(repeating: nil, count: checks.count)
        for (index, check) in checks.enumerated() {
            guard let value = event.value(at: check.path), value != .null else {
                if check.required { return (.malformed(reason: "missing_field", field: check.name), nil) }
                continue
            }
            switch Self.read(value, as: check.type) {
            case .success(let typed):
                if typed != value {
                    read.setValue(typed, at: check.path)
                    changed = true
                }
                values[index] = typed
            case .failure(let reason):
                return (.malformed(reason: reason, field: check.name), nil)
            }
        }
        var key = ""
        for (position, index) in keyIndices.enumerated() {
            if position > 0 { key.append("\u{1F}") }
            switch values[index] {
            case .string(let text)?:
                if text.isEmpty { return (.malformed(reason: "missing_field", field: checks[index].name), nil) }
                key += text
            case let other?: key += other.serializedString
            case nil: return (.malformed(reason: "missing_field", field: checks[index].name), nil)
            }
        }
        var time = now
        if let timeIndex, case .string(let text)? = values[timeIndex], let milliseconds = Timestamp.milliseconds(text) {
            let field = checks[timeIndex].name
            if milliseconds > now + validator.maxFutureSkew.milliseconds { return (.malformed(reason: "future_timestamp", field: field), nil) }
            if milliseconds < now - validator.maxAge.milliseconds { return (.stale(eventID: key), nil) }
            time = milliseconds
        }
        return (.valid(eventID: key, timestamp: time), changed ? Optional(read) : Optional<JSONValue>.none)
    }

    enum Reading {
        case success(JSONValue)
        case failure(String)
    }

    /// `value` as a value of `type`: itself when it has the type, a string read as the type (a
    /// CSV cell), else the reason it does not fit.
    static func read(_ value: JSONValue, as type: DatasetSpec.FieldType) -> Reading {
        switch (type, value) {
        case (.string, .string), (.integer, .int), (.number, .int), (.number, .double), (.boolean, .bool),
             (.object, .object), (.array, .array), (.json, _):
            return .success(value)
        case (.string, .int), (.string, .double), (.string, .bool):
            return .success(.string(value.serializedString))
        case (.timestamp, .string(let text)):
            return Timestamp.milliseconds(text) == nil ? .failure("invalid_timestamp") : .success(value)
        case (.integer, .string(let text)):
            return Int64(text.trimmingSpaces).map { .success(.int($0)) } ?? .failure("wrong_type")
        case (.number, .string(let text)):
            let trimmed = text.trimmingSpaces
            if let integer = Int64(trimmed) { return .success(.int(integer)) }
            guard let number = Double(trimmed), number.isFinite, trimmed.utf8.allSatisfy({ $0 != UInt8(ascii: "x") && $0 != UInt8(ascii: "X") }) else {
                return .failure("wrong_type")
            }
            return .success(.double(number))
        case (.boolean, .string(let text)):
            switch text.trimmingSpaces.lowercased() {
            case "true": return .success(.bool(true))
            case "false": return .success(.bool(false))
            default: return .failure("wrong_type")
            }
        default:
            return .failure("wrong_type")
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: Substring {
        let isSpace = { (c: Character) in c == " " || c == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}
