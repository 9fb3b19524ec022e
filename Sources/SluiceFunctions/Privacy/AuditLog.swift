import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Sluice
import SluiceHTTP
import SluicePostgres
import SluicePrivacy
import Synchronization

/// One row of the append-only `audit_log` (migration 9): who did what to which resource.
/// `subject` is a pseudonym, never a user id; nothing personal goes in `detail`.
public struct AuditEntry: Sendable {
    public var actor: String
    public var action: String
    public var resource: String
    public var subject: String?
    public var requestID: String?
    public var status: Int?
    public var detail: JSONValue?

    public init(actor: String, action: String, resource: String, subject: String? = nil, requestID: String? = nil,
                status: Int? = nil, detail: JSONValue? = nil) {
        self.actor = actor
        self.action = action
        self.resource = resource
        self.subject = subject
        self.requestID = requestID
        self.status = status
        self.detail = detail
    }

    /// One INSERT of `entries`.
    static func insert(_ entries: [AuditEntry]) -> PostgresQuery {
        let values = entries.map { entry -> PostgresQuery in
            """
            (\(entry.actor), \(entry.action), \(entry.resource), \(entry.subject), \(entry.requestID), \(entry.status)::integer, \
            \(entry.detail?.serializedString)::jsonb)
            """
        }
        return "INSERT INTO audit_log (actor, action, resource, subject, request_id, status, detail) VALUES \(values.joined(separator: ", ")) RETURNING id"
    }

    /// Writes the entry on `connection` (inside the caller's transaction, so that a change and
    /// its audit row commit together); answers its id.
    @discardableResult
    public func write(on connection: PostgresConnection) throws -> Int64 {
        try connection.query(Self.insert([self])).scalar(Int64.self) ?? 0
    }

    /// Writes the entry in a statement of its own.
    public func write(to pool: PostgresPool) async throws {
        try await Self.write([self], to: pool)
    }

    /// Writes several entries in one statement.
    static func write(_ entries: [AuditEntry], to pool: PostgresPool) async throws {
        _ = try await pool.query(insert(entries))
    }

    /// The verified caller's subject (``SluiceRequestContext/caller``), or `anonymous` for a
    /// request that names none.
    public static func actor(_ caller: Caller?) -> String {
        caller?.subject ?? "anonymous"
    }

    public static func requestID(of request: Request) -> String? {
        request.headers[GatewayHeaders.requestID]
    }
}

/// Writes an audit row for every request to a public API route this process answers (the
/// routes the hosted functions describe as ``APIOperation``s): the caller, the operation id as
/// the action, the route's template as the resource with the path's parameters masked in
/// `detail` (``AuditResource``; never the raw path), the request id and the status. Routes that write
/// their own rows in the same transaction as their change (consents, erasure) are left out.
///
/// Added after the gateway's middleware, so that under `sluice dev` it sees the caller the
/// gateway checked. A request is answered even when its audit row cannot be written (the
/// failure is logged), since the row follows the operation rather than guarding it.
public struct AuditMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    struct Operation {
        let method: String
        let segments: [String]
        let action: String
    }
    let operations: [Operation]
    let writer: AuditWriter
    let masker: PIIMasker
    let logger: Logger

    /// A middleware auditing `operations` into `pool`, masking path parameters with `masker`
    /// (``AuditResource/masker(key:)``).
    public init(operations: [APIOperation], pool: PostgresPool, masker: PIIMasker, logger: Logger) {
        self.operations = operations.map {
            Operation(method: $0.method, segments: $0.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init),
                      action: $0.operationID)
        }
        self.writer = AuditWriter(pool: pool)
        self.masker = masker
        self.logger = logger
    }

    /// The operation id of the described route `method path`, if any.
    func action(method: String, path: String) -> String? {
        operation(method: method, path: path)?.operation.action
    }

    /// The described route `method path` and what its audit row names, if any.
    func operation(method: String, path: String) -> (operation: Operation, resource: AuditResource)? {
        let segments = Array(path.split(separator: "/", omittingEmptySubsequences: false).dropFirst())
        guard let operation = operations.first(where: { operation in
            guard operation.method == method, operation.segments.count == segments.count else { return false }
            return zip(operation.segments, segments).allSatisfy { pattern, segment in
                pattern.hasPrefix("{") ? !segment.isEmpty : pattern == segment
            }
        }) else { return nil }
        return (operation, AuditResource.of(pattern: operation.segments, segments: segments, masker: masker))
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let (operation, resource) = operation(method: request.method.rawValue, path: request.uri.path) else {
            return try await next(request, context)
        }
        let action = operation.action
        let status: Int
        let response: Response
        do {
            response = try await next(request, context)
            status = response.status.code
        } catch {
            let code = (error as? Problem)?.status.code ?? (error as? any HTTPResponseError)?.status.code ?? 500
            await audit(request, action: action, resource: resource, status: code, context: context)
            throw error
        }
        await audit(request, action: action, resource: resource, status: status, context: context)
        return response
    }

    func audit(_ request: Request, action: String, resource: AuditResource, status: Int, context: Context) async {
        let entry = AuditEntry(actor: AuditEntry.actor(context.caller), action: action, resource: resource.template,
                               subject: resource.subject, requestID: AuditEntry.requestID(of: request), status: status,
                               detail: resource.detail)
        do {
            try await writer.write(entry)
        } catch {
            context.logger.error("audit row not written", metadata: ["action": .string(action), "error": .string("\(type(of: error))")])
        }
    }
}

/// Writes audit rows with group commit: a request waits until its row is committed, and the
/// rows of requests that arrive while a write is in flight go together in the next one (one
/// INSERT of up to 500 rows), so many concurrent requests cost a few statements, not one each.
final class AuditWriter: Sendable {
    typealias Waiter = CheckedContinuation<Void, any Error>
    let pool: PostgresPool
    let batch: Int
    private let state = Mutex<(pending: [(AuditEntry, Waiter)], writing: Bool)>(([], false))

    init(pool: PostgresPool, batch: Int = 500) {
        self.pool = pool
        self.batch = batch
    }

    /// Returns once the entry is committed (or throws what the INSERT threw).
    func write(_ entry: AuditEntry) async throws {
        try await withCheckedThrowingContinuation { (waiter: Waiter) in
            let lead = state.withLock { state in
                state.pending.append((entry, waiter))
                if state.writing { return false }
                state.writing = true
                return true
            }
            if lead { Task { await self.drain() } }
        }
    }

    /// Writes what is pending, batch after batch, until nothing is.
    private func drain() async {
        while true {
            let taken: [(AuditEntry, Waiter)] = state.withLock { state in
                let taken = Array(state.pending.prefix(batch))
                state.pending.removeFirst(taken.count)
                if taken.isEmpty { state.writing = false }
                return taken
            }
            if taken.isEmpty { return }
            do {
                try await AuditEntry.write(taken.map(\.0), to: pool)
                for (_, waiter) in taken { waiter.resume() }
            } catch {
                for (_, waiter) in taken { waiter.resume(throwing: error) }
            }
        }
    }
}
