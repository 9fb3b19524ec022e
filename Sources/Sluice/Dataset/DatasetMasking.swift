/// What `pii-mask` does to a dataset's records besides scanning every string, key and number for
/// personal data: which values it replaces whole by a person's keyed pseudonym, and which it
/// never rewrites. Each path is named twice where the two differ: as the field's path in the
/// record as it was uploaded, and as its column (a record replaced through the API, or one
/// quarantined after transform, is in column form).
public struct DatasetMasking: Sendable, Equatable {
    /// Replaced whole by the person's keyed pseudonym: the subject and every `pii` field.
    public var pseudonymised: [JSONPath]
    /// Identifiers (the key's fields, the time field): never scanned or partly starred, so a
    /// record keeps the id it was sent with. One that holds an e-mail address is replaced whole
    /// by its keyed pseudonym (the same for the same value: it still identifies and deduplicates).
    public var identifiers: [JSONPath]
    /// Typed values that are not text and not personal (`number`, `integer`, `boolean`,
    /// `timestamp` fields without `pii`): never scanned, so a latitude or a price is stored as sent.
    public var verbatim: [JSONPath]

    public init(pseudonymised: [JSONPath] = [], identifiers: [JSONPath] = [], verbatim: [JSONPath] = []) {
        self.pseudonymised = pseudonymised
        self.identifiers = identifiers
        self.verbatim = verbatim
    }

    /// Nothing beyond the scan (a record of no known dataset).
    public static let none = DatasetMasking()

    public var isEmpty: Bool { pseudonymised.isEmpty && identifiers.isEmpty && verbatim.isEmpty }

    /// The same plan for records held at `prefix` (the quarantine's items hold theirs at `event`).
    public func under(_ prefix: [String]) -> DatasetMasking {
        func moved(_ paths: [JSONPath]) -> [JSONPath] { paths.map { JSONPath(keys: prefix + $0.keys) } }
        return DatasetMasking(pseudonymised: moved(pseudonymised), identifiers: moved(identifiers), verbatim: moved(verbatim))
    }
}

extension DatasetSpec {
    /// The masking of this dataset's records (``DatasetMasking``).
    public var masking: DatasetMasking {
        var pseudonymised: [String] = [], identifiers: [String] = [], verbatim: [String] = []
        func add(_ field: Field, to list: inout [String]) {
            if !list.contains(field.path) { list.append(field.path) }
            if let column = field.column, !list.contains(column) { list.append(column) }
        }
        if let subject, let field = field(at: subject) {
            add(field, to: &pseudonymised)
        } else if let subject {
            pseudonymised.append(subject)
        }
        for field in fields where field.pii { add(field, to: &pseudonymised) }
        for column in key {
            if let field = field(loadingInto: column), !field.pii { add(field, to: &identifiers) } else if !identifiers.contains(column) && !pseudonymised.contains(column) {
                identifiers.append(column)
            }
        }
        if let time, let field = field(at: time), !field.pii { add(field, to: &identifiers) }
        for field in fields where !field.pii && [.number, .integer, .boolean, .timestamp].contains(field.type) {
            if !identifiers.contains(field.path) { add(field, to: &verbatim) }
        }
        return DatasetMasking(pseudonymised: pseudonymised.map(JSONPath.init), identifiers: identifiers.map(JSONPath.init),
                              verbatim: verbatim.map(JSONPath.init))
    }
}
