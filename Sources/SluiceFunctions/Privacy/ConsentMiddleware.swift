import Sluice
import SluicePostgres
import SluicePrivacy
import SluiceRedis

/// The `consent` middleware: of the events the function forwards, those whose subject has not
/// consented to the manifest's purpose are dropped as `no_consent` (see ``ConsentRule``).
///
/// It runs after the function, so that an event which is malformed, stale or a duplicate is
/// counted as that, and only events that would go on are checked. Declared after `pii-mask`,
/// it sees the pseudonymised user id, which is how consents are recorded.
///
/// ```yaml
/// middleware: [pii-mask, consent]
/// config:
///   consent:
///     purpose: analytics            # required
///     unknown_subjects: allow       # allow (opt-out, the default) or deny (opt-in)
///     subject_fields: [user.id, user_id]
///     event_field: context.consent  # consent the event carries
/// ```
public struct ConsentMiddleware: Middleware {
    public let purpose: String
    public let unknown: ConsentRule.UnknownSubjects
    public let subjectFields: [JSONPath]
    public let eventField: JSONPath
    let book: ConsentBook
    let datasets: DatasetStore

    public static let reason = "no_consent"

    public init(setup: PipelineSetup) throws {
        let manifest = setup.manifest
        guard let config = manifest.config["consent"]?.objectValue else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.consent",
                                message: "the consent middleware needs config.consent with a purpose")
        }
        guard let purpose = config["purpose"]?.stringValue, purpose != "*", ConsentRule.isValidPurpose(purpose) else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.consent.purpose",
                                message: "must name the processing purpose (lowercase letters, digits, _ - .)")
        }
        self.purpose = purpose
        if let given = config["unknown_subjects"] {
            guard let policy = given.stringValue.flatMap(ConsentRule.UnknownSubjects.init(rawValue:)) else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.consent.unknown_subjects", message: "must be allow or deny")
            }
            unknown = policy
        } else {
            unknown = .allow
        }
        subjectFields = try Self.paths(config["subject_fields"], default: ["user.id", "user_id"], key: "config.consent.subject_fields", manifest: manifest)
        eventField = try Self.paths(config["event_field"].map { .array([$0]) }, default: ["context.consent"], key: "config.consent.event_field", manifest: manifest)[0]
        let pool = setup.dependencies.postgres, redis = setup.dependencies.redis, keys = setup.dependencies.keys
        let logger = setup.logger
        book = setup.dependencies.shared.consentBook { ConsentBook(pool: pool, redis: redis, keys: keys, logger: logger) }
        datasets = setup.dependencies.datasets
    }

    static func paths(_ value: JSONValue?, default fallback: [String], key: String, manifest: Manifest) throws -> [JSONPath] {
        guard let value else { return fallback.map(JSONPath.init) }
        guard let items = value.arrayValue, !items.isEmpty,
              let names = Optional(items.compactMap(\.stringValue)), names.count == items.count, names.allSatisfy({ !$0.isEmpty }) else {
            throw ManifestError(.badValue, file: manifest.file, key: key, message: "must be a field path or a list of them")
        }
        return names.map(JSONPath.init)
    }

    /// The event's subject: the first of `fields` (its dataset's subject field, then
    /// `subjectFields`) holding a string.
    func subject(of event: Event, fields: [JSONPath]) -> String? {
        for path in fields {
            if let id = event.value.value(at: path)?.stringValue, !id.isEmpty { return id }
        }
        return nil
    }

    public func handle(_ chunk: Chunk, context: FunctionContext, next: any EventFunction) async throws -> [Outcome] {
        var outcomes = try await next.handle(chunk, context: context)
        let subjectOfDataset = try await datasets.spec(chunk.datasetName, atLeast: chunk.dataset?.version)?.spec.subject.map(JSONPath.init)
        let fields = subjectOfDataset.map { [$0] + subjectFields } ?? subjectFields
        // The forwarded events' subjects, looked up once.
        let forwarded = outcomes.flatMap(\.forwardedEvents)
        guard !forwarded.isEmpty else { return outcomes }
        let subjects = Set(forwarded.compactMap { subject(of: $0, fields: fields) })
        let records = subjects.isEmpty ? [:] : try await book.records(of: subjects)
        for index in outcomes.indices {
            outcomes[index].keepForwarded(where: { event in
                let recorded = subject(of: event, fields: fields).flatMap { records[$0] } ?? []
                let carried = ConsentRule.carried(in: event.value, at: eventField, purpose: purpose)
                return ConsentRule.allows(recorded: recorded, carried: carried, purpose: purpose, unknown: unknown)
            }, otherwise: Self.reason)
        }
        return outcomes
    }
}

/// The `geo-restrict` middleware: of the events the function forwards, those from a country
/// the manifest lists are dropped as `geo_restricted`.
///
/// ```yaml
/// middleware: [pii-mask, consent, geo-restrict]
/// config:
///   geo_restrict:
///     countries: [KP, IR]                       # ISO 3166-1 alpha-2, any case
///     country_fields: [context.location.country, country]
/// ```
public struct GeoRestrictMiddleware: Middleware {
    public let countries: Set<String>
    public let countryFields: [JSONPath]

    public static let reason = "geo_restricted"

    public init(manifest: Manifest) throws {
        let config = manifest.config["geo_restrict"]
        if let config, config.objectValue == nil {
            throw ManifestError(.badValue, file: manifest.file, key: "config.geo_restrict", message: "must be a mapping with countries")
        }
        var countries = Set<String>()
        if let given = config?["countries"] {
            guard let items = given.arrayValue else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.geo_restrict.countries", message: "must be a list of country codes")
            }
            for item in items {
                guard let code = item.stringValue, code.utf8.count == 2, code.utf8.allSatisfy({ ($0 | 0x20) &- 97 < 26 }) else {
                    throw ManifestError(.badValue, file: manifest.file, key: "config.geo_restrict.countries",
                                        message: "'\(item.serializedString)' is not an ISO 3166-1 alpha-2 code")
                }
                countries.insert(code.uppercased())
            }
        }
        self.countries = countries
        countryFields = try ConsentMiddleware.paths(config?["country_fields"], default: ["context.location.country", "country"],
                                                    key: "config.geo_restrict.country_fields", manifest: manifest)
    }

    public func handle(_ chunk: Chunk, context: FunctionContext, next: any EventFunction) async throws -> [Outcome] {
        var outcomes = try await next.handle(chunk, context: context)
        guard !countries.isEmpty else { return outcomes }
        for index in outcomes.indices {
            outcomes[index].keepForwarded(where: { event in
                for path in countryFields {
                    guard let country = event.value.value(at: path)?.stringValue else { continue }
                    return !countries.contains(country.uppercased())
                }
                return true
            }, otherwise: Self.reason)
        }
        return outcomes
    }
}
