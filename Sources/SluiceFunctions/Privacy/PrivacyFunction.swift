import Foundation
import Hummingbird
import Logging
import Sluice
import SluiceHTTP
import SluicePostgres
import SluicePrivacy
import SluiceRedis

/// The rights of the people whose events flow through Sluice, behind the gateway (admin):
///
/// - `PUT /api/v1/consents/{subject}` records a consent or a withdrawal for a purpose, and
///   `GET` answers what is recorded;
/// - `DELETE /api/v1/subjects/{subject}` erases a subject: their warehouse, quarantine and
///   asynchronous-call rows go, a withdrawal for every purpose is recorded so that later events
///   are dropped, and the report says what was removed;
/// - `GET /api/v1/audit` reads the audit log, newest first.
///
/// `{subject}` is the user id as events carry it, or its pseudonym (`u_` and 32 letters a–p,
/// the form the warehouse holds). Only the pseudonym is stored, and each change and its audit
/// row commit in one transaction; consent changes are then announced to every process's
/// consent cache.
public struct PrivacyFunction: HTTPFunction {
    let pool: PostgresPool
    let redis: RedisClient
    let keys: StreamKeys
    let masker: PIIMasker
    /// validate's pii-mask: the user fields of a call's events (for calls queued before their
    /// subjects were recorded).
    let pipelineMask: PIIMaskMiddleware
    let logger: Logger

    public init(setup: PipelineSetup) throws {
        let pool = setup.dependencies.postgres, redis = setup.dependencies.redis, keys = setup.dependencies.keys
        let logger = setup.logger
        let key = Array((setup.configuration.pseudonymKey ?? "").utf8)
        guard key.count >= 16 else {
            throw ManifestError(.badValue, file: setup.manifest.file, key: "handler",
                                message: "privacy needs SLUICE_PSEUDONYM_KEY of at least 16 bytes (the key validate's pii-mask uses)")
        }
        self.pool = pool
        self.logger = logger
        masker = PIIMasker(operators: [:], key: key)
        pipelineMask = try PipelinePII.mask(setup: setup)
        self.redis = redis
        self.keys = keys
    }

    /// The operation ids whose handlers write their own audit rows (with the change, and with the
    /// subject's pseudonym instead of the path, which holds the id).
    public static let selfAudited: Set<String> = ["putConsent", "getConsents", "eraseSubject"]

    public func addRoutes(to router: Router<SluiceRequestContext>) {
        router.put("/api/v1/consents/{subject}") { request, context -> JSONResponse in
            try await self.putConsent(try Self.subject(in: context), request: request, caller: context.caller)
        }
        router.get("/api/v1/consents/{subject}") { request, context -> JSONResponse in
            try await self.consents(try Self.subject(in: context), request: request, caller: context.caller)
        }
        router.delete("/api/v1/subjects/{subject}") { request, context -> JSONResponse in
            try await self.erase(try Self.subject(in: context), request: request, caller: context.caller)
        }
        router.get("/api/v1/audit") { request, _ -> JSONResponse in
            try await self.audit(request)
        }
    }

    /// The `{subject}` of the path, percent-decoded (`50%25` is the user id `50%`): the router
    /// hands path parameters over as sent.
    static func subject(in context: SluiceRequestContext) throws -> String {
        let sent = try context.parameters.require("subject")
        guard let subject = sent.removingPercentEncoding else {
            throw Problem(.badRequest, code: "invalid_subject", detail: "the subject is not a valid percent-encoded path segment")
        }
        return subject
    }

    static let unavailable = Problem(.serviceUnavailable, code: "privacy_unavailable", detail: "the consent store is not available; try again")

    /// The stored form of a subject: its pseudonym (a pseudonym given is kept).
    func pseudonym(of subject: String) throws(Problem) -> String {
        guard !subject.isEmpty, subject.utf8.count <= 512 else {
            throw Problem(.badRequest, code: "invalid_subject", detail: "the subject must be a user id of 1 to 512 bytes")
        }
        return PIIMasker.isPseudonymousUserID(subject) ? subject : masker.pseudonymousUserID(subject)
    }

    func putConsent(_ subject: String, request: Request, caller: Caller?) async throws -> JSONResponse {
        let pseudonym = try pseudonym(of: subject)
        guard case .object(let body) = try await request.decodeJSON(limit: 16 << 10) else {
            throw Problem(.badRequest, code: "invalid_consent", detail: #"the body must be {"purpose": "...", "granted": true|false}"#)
        }
        if let unknown = body.keys.first(where: { $0 != "purpose" && $0 != "granted" }) {
            throw Problem(.badRequest, code: "unknown_field", detail: "'\(unknown)' is not a field of a consent", extra: ["field": .string(unknown)])
        }
        guard let purpose = body["purpose"]?.stringValue, ConsentRule.isValidPurpose(purpose) else {
            throw Problem(.badRequest, code: "invalid_purpose",
                          detail: "purpose must be * or 1 to 64 lowercase letters, digits, _ - . starting with a letter", extra: ["field": "purpose"])
        }
        guard case .bool(let granted)? = body["granted"] else {
            throw Problem(.badRequest, code: "wrong_type", detail: "granted must be true or false", extra: ["field": "granted"])
        }
        let entry = AuditEntry(actor: AuditEntry.actor(caller), action: "putConsent", resource: "consents/\(pseudonym)",
                               subject: pseudonym, requestID: AuditEntry.requestID(of: request), status: 200,
                               detail: ["purpose": .string(purpose), "granted": .bool(granted)])
        let updated: String
        do {
            updated = try await pool.withTransaction { connection in
                let rows = try connection.query("""
                    INSERT INTO consents (subject, purpose, granted, source) VALUES (\(pseudonym), \(purpose), \(granted)::boolean, 'api')
                    ON CONFLICT (subject, purpose) DO UPDATE SET granted = excluded.granted, source = 'api', updated_at = clock_timestamp()
                    RETURNING \(SQLText.iso("updated_at"))
                    """)
                try entry.write(on: connection)
                return try rows.scalar(String.self) ?? ""
            }
        } catch {
            throw Self.unavailable
        }
        await announce(pseudonym)
        return JSONResponse(status: .ok, value: [
            "subject": .string(pseudonym), "purpose": .string(purpose), "granted": .bool(granted), "updated_at": .string(updated),
        ])
    }

    func consents(_ subject: String, request: Request, caller: Caller?) async throws -> JSONResponse {
        let pseudonym = try pseudonym(of: subject)
        let entry = AuditEntry(actor: AuditEntry.actor(caller), action: "getConsents", resource: "consents/\(pseudonym)",
                               subject: pseudonym, requestID: AuditEntry.requestID(of: request), status: 200)
        let rows: PostgresRows
        do {
            rows = try await pool.withTransaction { connection in
                try entry.write(on: connection)
                return try connection.query("""
                    SELECT purpose, granted, source, \(SQLText.iso("updated_at")) FROM consents WHERE subject = \(pseudonym) ORDER BY purpose
                    """)
            }
        } catch {
            throw Self.unavailable
        }
        let consents: [JSONValue] = try rows.decode((String, Bool, String, String).self).map { purpose, granted, source, updated in
            ["purpose": .string(purpose), "granted": .bool(granted), "source": .string(source), "updated_at": .string(updated)]
        }
        return JSONResponse(status: .ok, value: ["subject": .string(pseudonym), "consents": .array(consents)])
    }

    /// Erases a subject in one transaction, everything by equality on its pseudonym, never by a
    /// search of text: rows of the warehouse (`user_id`), of the quarantine (`subject`) and of
    /// asynchronous calls (`subjects`); the subject is entered in `erasures` (the fence load and
    /// quarantine check, so events on their way are not stored) and a withdrawal for every
    /// purpose is recorded (so later events are dropped); the audit row holds the counts. The
    /// fence's lock is taken first: the stores in progress finish before the deletes, and no
    /// store writes between them and the commit.
    func erase(_ subject: String, request: Request, caller: Caller?) async throws -> JSONResponse {
        let pseudonym = try pseudonym(of: subject)
        let actor = AuditEntry.actor(caller), requestID = AuditEntry.requestID(of: request)
        let started = ContinuousClock.now
        let mask = pipelineMask
        let result: (datasets: [(String, Int)], quarantine: Int, calls: Int, at: String, audit: Int64)
        do {
            result = try await pool.withTransaction { connection in
                try ErasureFence.close(on: connection)
                try Self.recordCallSubjects(on: connection, mask: mask)
                // Every dataset with a subject field: its rows of the subject (events: user_id).
                var datasets: [(String, Int)] = []
                for spec in try DatasetStore.readAll(on: connection) {
                    guard let column = spec.subject.flatMap({ spec.field(at: $0)?.column }) else { continue }
                    let removed = try connection.query("""
                        WITH gone AS (DELETE FROM \(DatasetStore.table(spec)) WHERE \(identifier: column) = \(pseudonym) RETURNING 1) SELECT count(*) FROM gone
                        """).scalar(Int.self) ?? 0
                    datasets.append((spec.name, removed))
                }
                let quarantine = try connection.query("""
                    WITH gone AS (DELETE FROM quarantine WHERE subject = \(pseudonym) RETURNING 1) SELECT count(*) FROM gone
                    """).scalar(Int.self) ?? 0
                let calls = try connection.query("""
                    WITH gone AS (DELETE FROM async_calls WHERE subjects @> ARRAY[\(pseudonym)]::text[] RETURNING 1) SELECT count(*) FROM gone
                    """).scalar(Int.self) ?? 0
                try connection.query("""
                    INSERT INTO erasures (subject) VALUES (\(pseudonym)) ON CONFLICT (subject) DO UPDATE SET erased_at = clock_timestamp()
                    """)
                let at = try connection.query("""
                    INSERT INTO consents (subject, purpose, granted, source) VALUES (\(pseudonym), '*', false, 'erasure')
                    ON CONFLICT (subject, purpose) DO UPDATE SET granted = false, source = 'erasure', updated_at = clock_timestamp()
                    RETURNING \(SQLText.iso("updated_at"))
                    """).scalar(String.self) ?? ""
                let audit = try AuditEntry(actor: actor, action: "eraseSubject", resource: "subjects/\(pseudonym)", subject: pseudonym,
                                           requestID: requestID, status: 200,
                                           detail: ["events": .int(Int64(datasets.first { $0.0 == "events" }?.1 ?? 0)),
                                                    "datasets": .object(JSONObject(uncheckedMembers: datasets.map { ($0.0, .int(Int64($0.1))) })),
                                                    "quarantine": .int(Int64(quarantine)), "async_calls": .int(Int64(calls))]).write(on: connection)
                return (datasets, quarantine, calls, at, audit)
            }
        } catch {
            throw Self.unavailable
        }
        await announce(pseudonym)
        let elapsed = ContinuousClock.now - started
        let events = result.datasets.first { $0.0 == "events" }?.1 ?? 0
        logger.info("subject erased", metadata: [
            "events": .stringConvertible(events), "datasets": .stringConvertible(result.datasets.count),
            "quarantine": .stringConvertible(result.quarantine),
            "async_calls": .stringConvertible(result.calls), "audit_id": .stringConvertible(result.audit),
        ])
        return JSONResponse(status: .ok, value: [
            "subject": .string(pseudonym),
            "removed": [
                "events": .int(Int64(events)), "quarantine": .int(Int64(result.quarantine)), "async_calls": .int(Int64(result.calls)),
                "datasets": .object(JSONObject(uncheckedMembers: result.datasets.map { ($0.0, .int(Int64($0.1))) })),
            ],
            "consent": ["subject": .string(pseudonym), "purpose": "*", "granted": false, "updated_at": .string(result.at)],
            "audit_id": .int(result.audit),
            "duration_ms": .int(Int64(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)),
        ])
    }

    /// Records the subjects of calls queued before calls recorded them (`subjects` NULL: queued
    /// by a build older than migration 12), so that the erasure finds them by equality too. Once
    /// done, later erasures find none to do.
    static func recordCallSubjects(on connection: PostgresConnection, mask: PIIMaskMiddleware) throws {
        let rows = try connection.query("SELECT id::text, events::text FROM async_calls WHERE subjects IS NULL FOR UPDATE")
        for (id, text) in try rows.decode((String, String).self) {
            var subjects: [String] = [], seen: Set<String> = []
            if case .array(let events)? = try? JSONParser().parse(text) {
                for event in events {
                    for subject in mask.subjects(of: event) where seen.insert(subject).inserted { subjects.append(subject) }
                }
            }
            try connection.query("UPDATE async_calls SET subjects = \(subjects)::text[] WHERE id = \(id)::uuid")
        }
    }

    /// Announces a change to every consent cache; a failure is logged, and caches then catch up
    /// within their maximum age (five minutes).
    func announce(_ pseudonym: String) async {
        for attempt in 1...3 {
            do {
                try await ConsentBook.announce(pseudonym, redis: redis, keys: keys)
                return
            } catch {
                if attempt == 3 {
                    logger.error("consent change not announced; caches follow within 5 minutes", metadata: ["error": .string("\(type(of: error))")])
                } else {
                    try? await Task.sleep(for: .milliseconds(100 * attempt))
                }
            }
        }
    }

    /// The audit log, newest first: filters `actor`, `action`, `subject` (an id or pseudonym),
    /// `limit` (1–1000, default 100) and `before` (an entry id: the page after it).
    func audit(_ request: Request) async throws -> JSONResponse {
        let query = request.uri.queryParameters
        var conditions: [PostgresQuery] = ["true"]
        if let actor = query.get("actor") { conditions.append("actor = \(actor)") }
        if let action = query.get("action") { conditions.append("action = \(action)") }
        if let subject = query.get("subject") { conditions.append("subject = \(try pseudonym(of: subject))") }
        if let text = query.get("before") {
            guard let before = Int64(text), before > 0 else {
                throw Problem(.badRequest, code: "invalid_parameter", detail: "before must be an entry id", extra: ["parameter": "before"])
            }
            conditions.append("id < \(before)::bigint")
        }
        var limit = 100
        if let text = query.get("limit") {
            guard let value = Int(text), (1...1000).contains(value) else {
                throw Problem(.badRequest, code: "invalid_parameter", detail: "limit must be 1 to 1000", extra: ["parameter": "limit"])
            }
            limit = value
        }
        let rows: PostgresRows
        do {
            rows = try await pool.query("""
                SELECT id, \(SQLText.iso("at")), actor, action, resource, subject, request_id, status, detail::text
                FROM audit_log WHERE \(conditions.joined(separator: " AND ")) ORDER BY id DESC LIMIT \(limit + 1)
                """)
        } catch {
            throw Self.unavailable
        }
        var entries: [JSONValue] = []
        let read = try rows.decode((Int64, String, String, String, String, String?, String?, Int64?, String?).self)
        for (id, at, actor, action, resource, subject, requestID, status, detailText) in read.prefix(limit) {
            let detail = try detailText.map { try JSONParser().parse($0) } ?? .null
            entries.append([
                "id": .int(id), "at": .string(at), "actor": .string(actor),
                "action": .string(action), "resource": .string(resource), "subject": subject.map(JSONValue.string) ?? .null,
                "request_id": requestID.map(JSONValue.string) ?? .null, "status": status.map(JSONValue.int) ?? .null,
                "detail": detail,
            ])
        }
        var page: JSONObject = ["entries": .array(entries)]
        if read.count > limit, let last = entries.last?["id"] { page["next_before"] = last }
        return JSONResponse(status: .ok, value: .object(page))
    }
}
