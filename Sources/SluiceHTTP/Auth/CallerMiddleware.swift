import CoreMetrics
import HTTPTypes
import Hummingbird
import Logging
import Sluice

/// Makes every route of a function process answer only requests the gateway has checked: a
/// request must carry a valid ``CallerAssertion`` for exactly its method and target, else it is
/// answered `401 caller_unverified`. The caller headers the handlers read (`X-Sluice-Subject`,
/// `X-Sluice-Roles`) are rewritten from the assertion, so nothing a client sends can name a
/// caller. Only the probes and the metrics are open (`GET /health/…`, `/metrics`): they carry
/// no data of anyone's.
///
/// Added after the hosted functions' own middleware (the gateway's, under `sluice dev`, which
/// makes the assertion) and before every route.
public struct CallerMiddleware: RouterMiddleware {
    public typealias Context = BasicRequestContext
    /// `nil` when the process has no key: then every route but the open ones answers 401.
    let verifier: CallerAssertionVerifier?
    let logger: Logger

    /// Whether `path` is answered without an assertion (GET and HEAD only).
    /// Exactly `/metrics` or `/health/<letters>` (an unknown probe answers 404, not 401), so that no
    /// spelling a router reads differently (`/health/../…`, `/health//…`) is open.
    public static func isOpen(_ path: String) -> Bool {
        if path == "/metrics" { return true }
        guard path.hasPrefix("/health/") else { return false }
        let name = path.utf8.dropFirst("/health/".count)
        return !name.isEmpty && name.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }
    }

    public init(verifier: CallerAssertionVerifier?, logger: Logger) {
        self.verifier = verifier
        self.logger = logger
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .get || request.method == .head, Self.isOpen(request.uri.path) {
            return try await next(request, context)
        }
        var head = request.head
        let header = head.headerFields[CallerHeaders.assertion]
        head.headerFields[CallerHeaders.assertion] = nil
        head.headerFields[CallerHeaders.subject] = nil
        head.headerFields[CallerHeaders.roles] = nil
        let assertion: CallerAssertion
        do throws(CallerAssertionFailure) {
            guard let verifier else { throw .noKey }
            assertion = try verifier.verify(header, method: request.method.rawValue, target: request.uri.description)
        } catch {
            Counter(label: "sluice_caller_refusals_total", dimensions: [("reason", error.rawValue)]).increment()
            logger.notice("request without the gateway's assertion refused", metadata: ["reason": .string(error.rawValue)])
            throw Problem(.unauthorized, code: "caller_unverified",
                          detail: "this function answers only requests that the gateway has checked; call it through the gateway")
        }
        head.headerFields[CallerHeaders.subject] = assertion.subject
        head.headerFields[CallerHeaders.roles] = assertion.roles.joined(separator: ",")
        return try await next(Request(head: head, body: request.body), context)
    }
}

/// The caller a function's handler may act on: what ``CallerMiddleware`` verified.
public struct Caller: Sendable, Equatable {
    /// The verified subject.
    public var subject: String
    /// The verified roles.
    public var roles: Set<String>

    public init(subject: String, roles: Set<String>) {
        self.subject = subject
        self.roles = roles
    }

    /// The caller of `request`, as ``CallerMiddleware`` left it; `nil` for a request it did not check.
    public init?(_ request: Request) {
        self.init(headers: request.headers)
    }

    /// The caller named by a checked request's headers.
    public init?(headers: HTTPFields) {
        guard let subject = headers[CallerHeaders.subject] else { return nil }
        self.subject = subject
        roles = Set((headers[CallerHeaders.roles] ?? "").split(separator: ",").map(String.init))
    }

    /// Whether the caller holds `role`.
    public func has(_ role: String) -> Bool { roles.contains(role) }

    /// The fixed-size key under which rows record their creator: the SHA-256 of the subject,
    /// hex (a subject may be an e-mail address; the key compares by equality and reveals nothing).
    public var ownerKey: String { SHA256.hex(subject.utf8) }
}
