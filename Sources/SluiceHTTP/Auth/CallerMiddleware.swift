import CoreMetrics
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Sluice

/// Makes every route of a function process answer only requests the gateway has checked: a
/// request must carry a valid ``CallerAssertion`` for exactly its method, target and body, made
/// for a function this process hosts, current, and not seen before; else it is answered
/// `401 caller_unverified`. The verified caller is put in the request context
/// (``SluiceRequestContext/caller``), roles as a list; the caller headers (`X-Sluice-Subject`,
/// `X-Sluice-Roles`) are removed, so nothing a client sends can name a caller. Only the probes
/// and the metrics are open (`GET /health/…`, `/metrics`): they carry no data of anyone's.
///
/// Added after the hosted functions' own middleware (the gateway's, under `sluice dev`, which
/// makes the assertion) and before every route.
public struct CallerMiddleware: RouterMiddleware {
    public typealias Context = SluiceRequestContext
    /// `nil` when the process has no key: then every route but the open ones answers 401.
    let verifier: CallerAssertionVerifier?
    /// The functions this process hosts: an assertion must name one of them. Under `sluice dev`
    /// that is every function, which share one process and so one trust boundary.
    let functions: Set<String>
    let replays: CallerReplayGuard
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

    /// A middleware accepting assertions checked by `verifier` made for one of `functions`.
    public init(verifier: CallerAssertionVerifier?, functions: Set<String>, replays: CallerReplayGuard = CallerReplayGuard(), logger: Logger) {
        self.verifier = verifier
        self.functions = functions
        self.replays = replays
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
        var body = request.body
        let assertion: CallerAssertion
        do throws(CallerAssertionFailure) {
            guard let verifier else { throw .noKey }
            assertion = try verifier.verify(header, method: request.method.rawValue, target: request.uri.description, functions: functions)
            if case .sha256(let digest) = assertion.body {
                // A bound body is read whole before any handler acts on it.
                let bytes: ByteBuffer
                do { bytes = try await request.body.collect(upTo: CallerAssertion.boundBodyLimit) } catch { throw .wrongBody }
                guard Sluice.SHA256.hex(bytes.readableBytesView) == digest else { throw .wrongBody }
                body = RequestBody(buffer: bytes)
            }
            guard replays.claim(assertion.id, until: assertion.expiresAt + CallerAssertionVerifier.skew) else { throw .replayed }
        } catch {
            Counter(label: "sluice_caller_refusals_total", dimensions: [("reason", error.rawValue)]).increment()
            logger.notice("request without the gateway's assertion refused", metadata: ["reason": .string(error.rawValue)])
            throw Problem(.unauthorized, code: "caller_unverified",
                          detail: "this function answers only requests that the gateway has checked; call it through the gateway")
        }
        var context = context
        context.caller = Caller(subject: assertion.subject, roles: Set(assertion.roles))
        return try await next(Request(head: head, body: body), context)
    }
}
