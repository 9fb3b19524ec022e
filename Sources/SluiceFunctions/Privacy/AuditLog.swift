import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Sluice
import SluiceHTTP
import SluicePostgres

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

    static let insert = """
        INSERT INTO audit_log (actor, action, resource, subject, request_id, status, detail)
        VALUES ($1, $2, $3, $4, $5, $6::integer, $7::jsonb) RETURNING id
        """

    var parameters: [String?] {
        [actor, action, resource, subject, requestID, status.map(String.init), detail?.serializedString]
    }

    /// Writes the entry on `connection` (inside the caller's transaction, so that a change and
    /// its audit row commit together); answers its id.
    @discardableResult
    public func write(on connection: PostgresConnection) throws -> Int64 {
        Int64(try connection.query(Self.insert, parameters).scalar ?? "") ?? 0
    }

    /// Writes the entry in a statement of its own.
    public func write(to pool: PostgresPool) async throws {
        _ = try await pool.query(Self.insert, parameters)
    }

    /// The caller as the gateway named it (`X-Sluice-Subject`), or `anonymous` for a request
    /// that did not come through the gateway.
    public static func actor(of request: Request) -> String {
        request.headers[GatewayHeaders.subject] ?? "anonymous"
    }

    public static func requestID(of request: Request) -> String? {
        request.headers[GatewayHeaders.requestID]
    }
}

/// Writes an audit row for every request to a public API route this process answers (the
/// routes the hosted functions describe as ``APIOperation``s): the caller, the operation id as
/// the action, the path as the resource, the request id and the status. Routes that write
/// their own rows in the same transaction as their change (consents, erasure) are left out.
///
/// Added after the gateway's middleware, so that under `sluice dev` it sees the caller the
/// gateway checked. A request is answered even when its audit row cannot be written (the
/// failure is logged), since the row follows the operation rather than guarding it.
public struct AuditMiddleware: RouterMiddleware {
    public typealias Context = BasicRequestContext
    struct Operation {
        let method: String
        let segments: [String]
        let action: String
    }
    let operations: [Operation]
    let pool: PostgresPool
    let logger: Logger

    public init(operations: [APIOperation], pool: PostgresPool, logger: Logger) {
        self.operations = operations.map {
            Operation(method: $0.method, segments: $0.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init),
                      action: $0.operationID)
        }
        self.pool = pool
        self.logger = logger
    }

    /// The operation id of the described route `method path`, if any.
    func action(method: String, path: String) -> String? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        return operations.first { operation in
            guard operation.method == method, operation.segments.count == segments.count else { return false }
            return zip(operation.segments, segments).allSatisfy { pattern, segment in
                pattern.hasPrefix("{") ? !segment.isEmpty : pattern == segment
            }
        }?.action
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let action = action(method: request.method.rawValue, path: request.uri.path) else {
            return try await next(request, context)
        }
        let status: Int
        let response: Response
        do {
            response = try await next(request, context)
            status = response.status.code
        } catch {
            let code = (error as? Problem)?.status.code ?? (error as? any HTTPResponseError)?.status.code ?? 500
            await audit(request, action: action, status: code, context: context)
            throw error
        }
        await audit(request, action: action, status: status, context: context)
        return response
    }

    func audit(_ request: Request, action: String, status: Int, context: Context) async {
        let entry = AuditEntry(actor: AuditEntry.actor(of: request), action: action, resource: request.uri.path,
                               requestID: AuditEntry.requestID(of: request), status: status)
        do {
            try await entry.write(to: pool)
        } catch {
            context.logger.error("audit row not written", metadata: ["action": .string(action), "error": .string("\(type(of: error))")])
        }
    }
}
