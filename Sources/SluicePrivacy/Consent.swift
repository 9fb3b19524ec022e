import Sluice

/// One recorded consent of a subject: for a purpose (`*` is every purpose), granted or
/// withdrawn, and when it was recorded.
public struct ConsentRecord: Sendable, Hashable {
    /// The purpose, or `*` for every purpose (an erasure records one).
    public var purpose: String
    public var granted: Bool
    /// When it was recorded, in microseconds since 1970 (the database's clock).
    public var recordedAt: Int64

    public init(purpose: String, granted: Bool, recordedAt: Int64) {
        self.purpose = purpose
        self.granted = granted
        self.recordedAt = recordedAt
    }
}

/// Whether a subject's event may be processed for a purpose.
///
/// The rules, in order:
/// 1. A recorded withdrawal overrides everything: of the subject's records for the purpose and
///    for `*`, the newest decides, and if it withdraws, the event is dropped whatever it carries.
/// 2. Consent carried in the event (`context.consent`) is honoured: `true`/`false` for every
///    purpose, or an object of purposes (`{"analytics": true}`; a `*` key covers the rest).
/// 3. A recorded grant allows.
/// 4. A subject with neither (or an event without a subject) follows the manifest's policy for
///    unknown subjects.
public enum ConsentRule {
    /// What happens to the events of a subject nothing is known about.
    public enum UnknownSubjects: String, Sendable, CaseIterable {
        /// Processed (consent is assumed until withdrawn: opt-out).
        case allow
        /// Dropped as `no_consent` (consent must be recorded or carried first: opt-in).
        case deny
    }

    /// The decision for one event. `recorded` may hold records of other purposes; they are
    /// ignored.
    public static func allows(recorded: [ConsentRecord], carried: Bool?, purpose: String, unknown: UnknownSubjects) -> Bool {
        var newest: ConsentRecord?
        for record in recorded where record.purpose == purpose || record.purpose == "*" {
            if newest == nil || record.recordedAt > newest!.recordedAt { newest = record }
        }
        if let newest, !newest.granted { return false }
        if let carried { return carried }
        if newest != nil { return true }
        return unknown == .allow
    }

    /// The consent an event carries at `field` for `purpose`: a boolean, or an object whose
    /// `purpose` (else `*`) key is a boolean. `nil` when it carries none.
    public static func carried(in event: JSONValue, at field: JSONPath, purpose: String) -> Bool? {
        switch event.value(at: field) {
        case .bool(let value)?:
            return value
        case .object(let purposes)?:
            if case .bool(let value)? = purposes[purpose] { return value }
            if case .bool(let value)? = purposes["*"] { return value }
            return nil
        default:
            return nil
        }
    }

    /// Whether `purpose` is a name a consent may be recorded for: `*`, or 1–64 of lowercase
    /// letters, digits, `_`, `-` and `.`, starting with a letter.
    public static func isValidPurpose(_ purpose: String) -> Bool {
        if purpose == "*" { return true }
        let bytes = Array(purpose.utf8)
        guard (1...64).contains(bytes.count), (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[0]) else { return false }
        return bytes.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
        }
    }
}
