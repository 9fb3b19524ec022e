import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Sluice
import SluiceHTTP
import SluiceNotify
import SluicePostgres
import SluicePrivacy
import Synchronization

/// Asynchronous invocation of the event functions that opt in (`expose: [async]` in their
/// manifest, which also requires `pii-mask`): `POST /api/v1/functions/{name}/async` masks the
/// events with the function's own `pii-mask`, records the call with its creator in PostgreSQL
/// and answers 202 with its id; internal stages (load, jobs, notify, quarantine) are never
/// callable; a worker in every replica runs queued
/// calls (a call left running by a dead replica is run again after `config.call_timeout`) and
/// POSTs the outcomes to the caller's `X-Callback-Url`, retried with backoff up to
/// `config.callback_attempts`. `GET /api/v1/calls/{id}` answers a call's state.
public struct CallsFunction: HTTPFunction {
    let pool: PostgresPool
    let logger: Logger
    let loader: ManifestLoader
    let registry: PipelineRegistry
    /// The setup the called functions are built with (this function's configuration and dependencies).
    let stageSetup: PipelineSetup
    let invokers: InvokerCache
    let pollInterval: Duration
    let callTimeout: Duration
    let callbackAttempts: Int
    /// Where callers may have outcomes sent (no internal addresses unless allowed).
    let callbacks: OutboundPolicy
    /// `SLUICE_WEBHOOK_SECRET`: callbacks carry `Sluice-Signature` when it is set.
    let signingSecret: [UInt8]?
    let callbackTimeout: Duration
    /// `SLUICE_PSEUDONYM_KEY`, for the called function's `pii-mask`.
    let pseudonymKey: String?
    /// The `pii-mask` of each callable function, built once.
    let maskers = MaskerCache()
    /// validate's pii-mask: the pseudonyms of a call's user ids, recorded with the call
    /// (`async_calls.subjects`) so that an erasure finds the call by equality.
    let pipelineMask: PIIMaskMiddleware

    public init(setup: PipelineSetup) throws {
        pool = setup.dependencies.postgres
        loader = setup.dependencies.manifests
        registry = setup.registry
        stageSetup = setup
        logger = setup.logger
        invokers = InvokerCache()
        pollInterval = try setup.manifest.configDuration("poll_interval", default: .milliseconds(200))
        callTimeout = try setup.manifest.configDuration("call_timeout", default: .seconds(300))
        callbackTimeout = try setup.manifest.configDuration("callback_timeout", default: .seconds(10))
        callbackAttempts = Int(setup.manifest.config["callback_attempts"]?.intValue ?? 8)
        callbacks = OutboundPolicy(configuration: setup.configuration)
        signingSecret = setup.configuration.webhookSecret.map { Array($0.utf8) }
        pseudonymKey = setup.configuration.pseudonymKey
        pipelineMask = try PipelinePII.mask(setup: setup)
    }

    public var backgroundServices: [any Service] { [CallWorker(function: self)] }

    public func addRoutes(to router: Router<SluiceRequestContext>) {
        router.post("/api/v1/functions/{name}/async") { request, context -> Response in
            try await self.enqueue(name: try context.parameters.require("name"), request: request, caller: context.caller)
        }
        router.get("/api/v1/calls/{id}") { request, context -> JSONResponse in
            JSONResponse(status: .ok, value: try await self.call(try context.parameters.require("id"), caller: context.caller))
        }
    }

    static let callbackHeader = HTTPField.Name("X-Callback-Url")!
    static let unavailable = Problem(.serviceUnavailable, code: "calls_unavailable", detail: "the call store is not available; try again")

    /// The invoker of event function `name`, built once from its manifest.
    func invoker(_ name: String) async throws -> FunctionInvoker? {
        if let cached = invokers.get(name) { return cached }
        // Only event functions: an HTTP function (the gateway, ingest) is never built here.
        // `name` is checked against [a-z0-9_-] before it gets here: it names a folder, never a path.
        let invoker: FunctionInvoker?
        do {
            invoker = try await registry.makeInvoker(named: name, loader: loader, setup: stageSetup)
        } catch {
            logger.error("cannot build a function for a call", metadata: ["target": .string(name), "error_type": .string("\(type(of: error))")])
            throw Problem(.serviceUnavailable, code: "function_unavailable", detail: "the function cannot be run here now")
        }
        if let invoker { invokers.set(name, invoker) }
        return invoker
    }

    /// The `pii-mask` of function `name` when it may be called asynchronously (its manifest
    /// lists `expose: [async]`, which requires `pii-mask`); `nil` for every other name, so that
    /// an internal stage is indistinguishable from a function that does not exist.
    func callable(_ name: String) throws -> PIIMaskMiddleware? {
        guard name.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || (48...57).contains($0) || (97...122).contains($0) }),
              !name.isEmpty, name.utf8.count <= 64 else { return nil }
        if let known = maskers.get(name) { return known }
        guard let manifest = try? loader.load(name), manifest.expose.contains(.async), manifest.middleware.contains("pii-mask") else { return nil }
        let masker: PIIMaskMiddleware
        do {
            masker = try PIIMaskMiddleware(manifest: manifest, pseudonymKey: pseudonymKey)
        } catch {
            logger.error("cannot build the masking of a callable function", metadata: ["target": .string(name)])
            throw Problem(.serviceUnavailable, code: "function_unavailable", detail: "the function cannot be run here now")
        }
        maskers.set(name, masker)
        return masker
    }

    func enqueue(name: String, request: Request, caller: Caller?) async throws -> Response {
        guard let masker = try callable(name), try await invoker(name) != nil else {
            throw Problem(.notFound, code: "function_not_found", detail: "no function callable asynchronously has this name")
        }
        guard let caller else {
            throw Problem(.unauthorized, code: "caller_unverified", detail: "this function answers only requests that the gateway has checked")
        }
        var callback: String?
        if let url = request.headers[Self.callbackHeader] {
            callback = try await callbacks.acceptCallback(url)
        }
        let value = try await request.decodeJSON(limit: 8 << 20)
        guard case .array(let events) = value, events.count <= 10_000 else {
            throw Problem(.badRequest, code: "invalid_events", detail: "the body must be a JSON array of at most 10000 events")
        }
        // Stored as the function would see them: masked by its own pii-mask (which, run again
        // when the call runs, leaves masked values as they are).
        let masked = JSONValue.array(events.map(masker.mask))
        let id = UUID().uuidString.lowercased()
        // The caller's trace (the gateway always passes one) follows the call to its callback.
        let trace = TraceContext.traceID(in: request.headers)
        var subjects: [String] = [], seen: Set<String> = []
        for event in events {
            for subject in pipelineMask.subjects(of: event) where seen.insert(subject).inserted { subjects.append(subject) }
        }
        do {
            try await pool.query("""
                INSERT INTO async_calls (id, function, events, callback_url, trace_id, created_by, subjects)
                VALUES (\(id)::uuid, \(name), \(masked.serializedString)::jsonb, \(callback), \(trace), \(caller.ownerKey), \(subjects)::text[])
                """)
        } catch {
            throw Self.unavailable
        }
        let answer: JSONValue = ["call_id": .string(id), "function": .string(name), "status": "queued"]
        return Response(status: .accepted, headers: [.contentType: "application/json", .location: "/api/v1/calls/\(id)"],
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.serializedBytes)))
    }

    /// Call `id` as its creator or an `admin` sees it; anyone else is answered as if it did not
    /// exist (404), so that ids reveal nothing.
    func call(_ id: String, caller: Caller?) async throws -> JSONValue {
        guard SQLText.isUUID(id.lowercased()), let caller else { throw Self.callNotFound }
        let rows: PostgresRows
        do {
            rows = try await pool.query("""
                SELECT id::text, function, status, outcomes::text, error::text, callback_status, callback_attempts, callback_error,
                       \(SQLText.iso("created_at")), \(SQLText.iso("started_at")), \(SQLText.iso("finished_at"))
                FROM async_calls WHERE id = \(id.lowercased())::uuid AND (\(caller.has("admin"))::boolean OR created_by = \(caller.ownerKey))
                """)
        } catch {
            throw Self.unavailable
        }
        guard let row = rows.first else { throw Self.callNotFound }
        let (callID, name, status, outcomes, error, callbackStatus, callbackAttempts, callbackError, created, started, finished) = try row.decode(
            (String, String, String, String?, String?, String?, Int64, String?, String, String?, String?).self)
        var object: JSONObject = [
            "id": .string(callID), "function": .string(name), "status": .string(status),
            "created_at": .string(created), "started_at": started.map(JSONValue.string) ?? .null,
            "finished_at": finished.map(JSONValue.string) ?? .null,
        ]
        if let outcomes = outcomes.flatMap({ try? JSONParser().parse($0) }) { object["outcomes"] = outcomes }
        if let error = error.flatMap({ try? JSONParser().parse($0) }) { object["error"] = error }
        if let callbackStatus {
            var callback: JSONObject = ["status": .string(callbackStatus), "attempts": .int(callbackAttempts)]
            if let callbackError { callback["last_error"] = .string(callbackError) }
            object["callback"] = .object(callback)
        }
        return .object(object)
    }

    static let callNotFound = Problem(.notFound, code: "call_not_found", detail: "no call has this id")
}

/// The `pii-mask` of each callable function, by name.
final class MaskerCache: Sendable {
    private let maskers = Mutex<[String: PIIMaskMiddleware]>([:])
    func get(_ name: String) -> PIIMaskMiddleware? { maskers.withLock { $0[name] } }
    func set(_ name: String, _ masker: PIIMaskMiddleware) { maskers.withLock { $0[name] = masker } }
}

/// Invokers built so far, by function name.
final class InvokerCache: Sendable {
    private let invokers = Mutex<[String: FunctionInvoker]>([:])
    func get(_ name: String) -> FunctionInvoker? { invokers.withLock { $0[name] } }
    func set(_ name: String, _ invoker: FunctionInvoker) { invokers.withLock { $0[name] = invoker } }
}

final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Runs queued calls and delivers their callbacks, until the process drains.
struct CallWorker: Service {
    let function: CallsFunction

    func run() async throws {
        let stopping = StopFlag()
        await withGracefulShutdownHandler {
            // A call in progress finishes; then the loop ends (within one poll interval).
            while !Task.isCancelled && !stopping.isSet {
                var busy = false
                do {
                    busy = try await runOne()
                    busy = try await deliverOne() || busy
                } catch {
                    function.logger.warning("call worker cannot reach PostgreSQL", metadata: ["error": .string("\(type(of: error))")])
                }
                if !busy { try? await Task.sleep(for: function.pollInterval) }
            }
        } onGracefulShutdown: {
            stopping.set()
        }
    }

    /// Runs the oldest queued call (or one a dead replica left running); answers whether it found one.
    func runOne() async throws -> Bool {
        let timeout = function.callTimeout.components.seconds
        let rows = try await function.pool.query("""
            UPDATE async_calls SET status = 'running', started_at = now()
            WHERE id = (SELECT id FROM async_calls
                        WHERE status = 'queued' OR (status = 'running' AND started_at < now() - make_interval(secs => \(timeout)::integer))
                        ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id::text, function, events::text, trace_id
            """)
        guard let (id, name, eventsText, traceID) = try rows.first?.decode((String, String, String, String?).self) else { return false }
        var outcomes: JSONValue?
        var failure: JSONValue?
        do {
            guard let invoker = try await function.invoker(name) else {
                throw FunctionError.permanent("function_not_found", "the function is no longer available")
            }
            guard case .array(let events) = try JSONParser().parse(eventsText) else {
                throw FunctionError.permanent("invalid_events", "the stored events are not an array")
            }
            let chunk = Chunk(id: "call-\(id)", traceID: traceID, events: events.map(Event.init))
            outcomes = .array(try await invoker.invoke(chunk, attempt: 1).map(RuntimeRoutes.describe))
        } catch let error as FunctionError {
            failure = ["code": .string(error.code), "kind": .string(error.kind.rawValue), "message": .string(error.message)]
        } catch {
            failure = ["code": "internal_error", "kind": "permanent", "message": "the call could not be run"]
        }
        try await function.pool.query("""
            UPDATE async_calls SET status = \(failure == nil ? "succeeded" : "failed"), outcomes = \(outcomes?.serializedString)::jsonb,
                error = \(failure?.serializedString)::jsonb, finished_at = now(),
                callback_status = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END,
                next_attempt_at = CASE WHEN callback_url IS NULL THEN NULL ELSE now() END
            WHERE id = \(id)::uuid
            """)
        function.logger.info("call finished", metadata: ["call": .string(id), "function": .string(name), "status": .string(failure == nil ? "succeeded" : "failed")])
        return true
    }

    /// Delivers one due callback; answers whether it found one.
    func deliverOne() async throws -> Bool {
        // The row is leased (next attempt pushed out) while the POST is in flight, so another
        // replica does not deliver it at the same time.
        let lease = function.callbackTimeout.components.seconds * 2 + 5
        let rows = try await function.pool.query("""
            UPDATE async_calls SET next_attempt_at = now() + make_interval(secs => \(lease)::integer)
            WHERE id = (SELECT id FROM async_calls WHERE callback_status = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id::text, function, status, outcomes::text, error::text, callback_url, callback_attempts, trace_id
            """)
        guard let (id, name, status, outcomes, error, callbackURL, attempted, trace) = try rows.first?.decode(
            (String, String, String, String?, String?, String?, Int, String?).self), let url = callbackURL else { return false }
        var body: JSONObject = ["call_id": .string(id), "function": .string(name), "status": .string(status)]
        if let outcomes = outcomes.flatMap({ try? JSONParser().parse($0) }) { body["outcomes"] = outcomes }
        if let error = error.flatMap({ try? JSONParser().parse($0) }) { body["error"] = error }
        let attempts = attempted + 1
        var headers = ["Content-Type: application/json", "User-Agent: sluice"]
        if let trace { headers.append("traceparent: \(TraceContext.traceparent(traceID: trace))") }
        let bytes = JSONValue.object(body).serializedBytes
        // Signed like notify's webhooks when SLUICE_WEBHOOK_SECRET is set, so a receiver can
        // tell a callback of this Sluice from anyone's POST.
        if let secret = function.signingSecret {
            headers.append("\(WebhookSignature.header): \(WebhookSignature.sign(body: bytes, timestamp: Int64(Date().timeIntervalSince1970), secret: secret))")
        }
        // Through the outbound policy, like every request Sluice sends: the host resolved and
        // checked again (DNS may have changed since the call was accepted), the address pinned,
        // no redirect followed (a 3xx is a failed attempt).
        var problem: String?
        var givesUp = false
        do {
            let answer = try await function.callbacks.post(url, headers: headers, body: bytes, timeout: function.callbackTimeout)
            if !(200..<300).contains(answer.status) { problem = "answered \(answer.status)" }
        } catch let refusal as OutboundPolicy.Refusal {
            // A URL the policy refuses now is refused on every attempt: failed at once.
            problem = refusal.rawValue
            givesUp = !refusal.isTransient
        } catch {
            problem = "not reachable"
        }
        if problem == nil {
            try await function.pool.query("""
                UPDATE async_calls SET callback_status = 'delivered', callback_attempts = \(attempts)::integer, callback_error = NULL,
                    next_attempt_at = NULL WHERE id = \(id)::uuid
                """)
        } else {
            // 1 s, 2 s, 4 s … at most 5 minutes between attempts; failed after the last.
            let delay = min(300, 1 << min(attempts - 1, 9))
            let failed = givesUp || attempts >= function.callbackAttempts
            try await function.pool.query("""
                UPDATE async_calls SET callback_attempts = \(attempts)::integer, callback_error = \(problem),
                    callback_status = CASE WHEN \(failed) THEN 'failed' ELSE 'pending' END,
                    next_attempt_at = CASE WHEN \(failed) THEN NULL ELSE now() + make_interval(secs => \(delay)::integer) END
                WHERE id = \(id)::uuid
                """)
            function.logger.notice("callback not delivered", metadata: ["call": .string(id), "attempt": .stringConvertible(attempts)])
        }
        return true
    }
}
