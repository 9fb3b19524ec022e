import Sluice
import Synchronization

/// The `pii-mask` middleware: before the function sees a chunk, every user id field is replaced
/// by its keyed pseudonym and every string at any depth has its personal data masked, so that
/// nothing the function forwards, quarantines or logs carries it.
///
/// Configured in the function's manifest:
///
/// ```yaml
/// middleware: [pii-mask]
/// config:
///   pii:
///     operators: {email: pseudonym, phone: mask, card: mask, iban: mask, ipv4: replace, ipv6: replace, ssn: redact}
///     user_fields: [user.id, user_id]
/// ```
///
/// Both keys are optional (the defaults are shown). An operator of `off` turns a kind off. The
/// key is `SLUICE_PSEUDONYM_KEY` (at least 16 bytes), required when anything is pseudonymised.
public struct PIIMaskMiddleware: StoredEventMasking {
    public let masker: PIIMasker
    public let userFields: [JSONPath]
    /// Where a dataset's record sits in what this function receives (`config.pii.record`): empty
    /// when the event is the record, `event` for the quarantine's items.
    public let recordPath: [String]
    /// Pseudonyms of recent user ids: a user's events repeat, and each HMAC costs two SHA-256
    /// passes (the largest cost of masking in a profile of validate). Memory only, bounded.
    let pseudonyms = PseudonymCache(capacity: 100_000)
    /// The masking of a chunk's dataset, besides `userFields`: its subject and personal-data
    /// fields to pseudonymise, its identifiers and typed values to leave as sent (set by the
    /// registry that knows the datasets; none by default).
    public var chunkMasking: (@Sendable (Chunk) async throws -> DatasetMasking)?

    public static let defaultOperators: [PIIEntity: PIIOperator] = [
        .email: .pseudonym, .phone: .mask, .card: .mask, .iban: .mask, .ipv4: .replace, .ipv6: .replace, .ssn: .redact,
    ]
    public static let defaultUserFields = ["user.id", "user_id"]

    /// - Throws: ``ManifestError`` for an unknown kind or operator, or a missing or short key.
    public init(manifest: Manifest, pseudonymKey: String?) throws(ManifestError) {
        let config = manifest.config["pii"]
        if let config, config.objectValue == nil {
            throw ManifestError(.badValue, file: manifest.file, key: "config.pii", message: "must be a mapping with operators and user_fields")
        }
        var operators = Self.defaultOperators
        if let given = config?["operators"] {
            guard let object = given.objectValue else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.pii.operators", message: "must map kinds to operators")
            }
            for (name, value) in object {
                guard let entity = PIIEntity(rawValue: name) else {
                    throw ManifestError(.badValue, file: manifest.file, key: "config.pii.operators.\(name)",
                                        message: "is not a kind of personal data (\(PIIEntity.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                if value.stringValue == "off" {
                    operators[entity] = nil
                } else if let text = value.stringValue, let op = PIIOperator(rawValue: text) {
                    operators[entity] = op
                } else {
                    throw ManifestError(.badValue, file: manifest.file, key: "config.pii.operators.\(name)",
                                        message: "must be one of \(PIIOperator.allCases.map(\.rawValue).joined(separator: ", ")), off")
                }
            }
        }
        var fields = Self.defaultUserFields
        if let given = config?["user_fields"] {
            guard let items = given.arrayValue, let names = Optional(items.compactMap(\.stringValue)), names.count == items.count,
                  names.allSatisfy({ !$0.isEmpty }) else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.pii.user_fields", message: "must be a list of field paths")
            }
            fields = names
        }
        let needsKey = !fields.isEmpty || operators.values.contains(.pseudonym)
        let key = Array((pseudonymKey ?? "").utf8)
        if needsKey && key.count < 16 {
            throw ManifestError(.badValue, file: manifest.file, key: "config.pii",
                                message: "pseudonyms need SLUICE_PSEUDONYM_KEY of at least 16 bytes")
        }
        masker = PIIMasker(operators: operators, key: key)
        userFields = fields.map(JSONPath.init)
        if let given = config?["record"] {
            guard let path = given.stringValue, !path.isEmpty else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.pii.record", message: "must be the field path of the record in each event")
            }
            recordPath = JSONPath(path).keys
        } else {
            recordPath = []
        }
    }

    /// The masking plan of a chunk's dataset, for the events this function receives.
    func plan(for chunk: Chunk) async throws -> DatasetMasking {
        guard let plan = try await chunkMasking?(chunk) else { return .none }
        return recordPath.isEmpty ? plan : plan.under(recordPath)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext, next: any EventFunction) async throws -> [Outcome] {
        var masked = chunk
        let plan = try await plan(for: chunk)
        masked.events = chunk.events.map { Event(mask($0.value, plan: plan)) }
        return try await next.handle(masked, context: context)
    }

    /// The chunk as it may be stored (a dead letter): its dataset's fields pseudonymised too; when
    /// they cannot be known, every string of the events is withheld rather than risk one.
    public func masked(_ chunk: Chunk) async -> Chunk {
        var masked = chunk
        do {
            let plan = try await plan(for: chunk)
            masked.events = chunk.events.map { Event(mask($0.value, plan: plan)) }
        } catch {
            masked.events = chunk.events.map { Event(Self.withholdingStrings(mask($0.value))) }
        }
        return masked
    }

    /// `value` with every string replaced by `<WITHHELD>`.
    static func withholdingStrings(_ value: JSONValue) -> JSONValue {
        switch value {
        case .string: return .string("<WITHHELD>")
        case .array(let items): return .array(items.map(withholdingStrings))
        case .object(let object):
            return .object(JSONObject(uncheckedMembers: object.map { ($0.key, withholdingStrings($0.value)) }))
        default: return value
        }
    }

    /// The event with its user ids pseudonymised and its strings, keys and numbers masked.
    public func mask(_ value: JSONValue) -> JSONValue {
        mask(value, plan: .none)
    }

    /// The event masked by its dataset's `plan`: its user ids and the plan's personal fields
    /// pseudonymised, its identifiers and typed values left as sent (an identifier holding an
    /// e-mail address becomes its pseudonym, whole), every other string, key and number masked.
    public func mask(_ value: JSONValue, plan: DatasetMasking) -> JSONValue {
        var value = value
        for path in plan.pseudonymised.isEmpty ? userFields : userFields + plan.pseudonymised {
            guard let id = value.value(at: path).flatMap(Self.userID), !PIIMasker.isPseudonymousUserID(id) else { continue }
            value.setValue(.string(pseudonym(of: id)), at: path)
        }
        // Values the scan must not rewrite are set aside and put back: only those the masker
        // would change (most identifiers hold nothing it finds, and cost one scan).
        var aside: [(JSONPath, JSONValue)] = []
        for path in plan.identifiers {
            guard let id = value.value(at: path), masker.masked(id) != nil else { continue }
            if case .string(let text) = id, masker.scanner.matches(in: text).contains(where: { $0.entity == .email }) {
                value.setValue(.string(pseudonym(of: text)), at: path)
            } else {
                aside.append((path, id))
                value.setValue(.null, at: path)
            }
        }
        for path in plan.verbatim {
            guard let kept = value.value(at: path), masker.masked(kept) != nil else { continue }
            aside.append((path, kept))
            value.setValue(.null, at: path)
        }
        value = masker.mask(value)
        for (path, kept) in aside where value.value(at: path) == .null { value.setValue(kept, at: path) }
        return value
    }

    /// The pseudonym of a user id (one already a pseudonym is kept).
    public func pseudonym(of id: String) -> String {
        PIIMasker.isPseudonymousUserID(id) ? id : pseudonyms.value(for: id) { masker.pseudonymousUserID($0) }
    }

    /// The pseudonyms of the user ids `value` holds at the user fields, in field order, without
    /// repeats: the subjects a stored copy of `value` belongs to (erasure finds it by them).
    public func subjects(of value: JSONValue) -> [String] {
        var found: [String] = []
        for path in userFields {
            guard let id = value.value(at: path).flatMap(Self.userID) else { continue }
            let pseudonym = pseudonym(of: id)
            if !found.contains(pseudonym) { found.append(pseudonym) }
        }
        return found
    }

    /// A user id as text: a string as it is, a number as its decimal form (`42`, so that the
    /// number 42 and the string "42" are one user); `nil` for anything else.
    public static func userID(_ value: JSONValue) -> String? {
        switch value {
        case .string(let id): return id
        case .int(let id): return String(id)
        case .double(let id) where id.isFinite: return JSONValue.double(id).serializedString
        default: return nil
        }
    }
}

/// A bounded map from user ids to their pseudonyms, shared by the chunks a process handles at
/// once. When full it starts again empty (simpler than LRU, and a user's events are close
/// together in time).
final class PseudonymCache: Sendable {
    private let entries = Mutex<[String: String]>([:])
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    func value(for id: String, compute: (String) -> String) -> String {
        if let known = entries.withLock({ $0[id] }) { return known }
        let value = compute(id)
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[id] = value
        }
        return value
    }
}

extension FunctionRegistry {
    /// Registers the `pii-mask` middleware, keyed by the process's `SLUICE_PSEUDONYM_KEY`.
    public mutating func registerPIIMask() {
        registerMiddleware("pii-mask") { setup in
            try PIIMaskMiddleware(manifest: setup.manifest, pseudonymKey: setup.configuration.pseudonymKey)
        }
    }
}
