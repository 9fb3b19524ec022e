import Foundation
import HTTPTypes
import Hummingbird
import CoreMetrics
import Logging
import NIOCore
import ServiceLifecycle
import Sluice
import SluiceHTTP
import SluiceRedis
import Synchronization

/// The front door of every `/api/v1` route: checks the bearer token, the caller's roles for the
/// route and their rate limit, then hands the request to the function that answers it: in the
/// same process under `sluice dev`, else at `SLUICE_UPSTREAM_<NAME>`.
public struct GatewayFunction: HTTPFunction {
    let policy: GatewayPolicy
    let verifier: JWTVerifier
    /// Signs the caller assertion each function checks (`SLUICE_GATEWAY_SIGNING_KEY`).
    let signer: CallerAssertionSigner
    let redis: RedisClient
    let keys: StreamKeys
    let hosted: Set<String>
    let upstreams: [String: String]
    let proxy: UpstreamProxy
    let logger: Logger
    /// The OpenAPI document, serialized once.
    let document: [UInt8]

    public init(setup: PipelineSetup) throws {
        let manifest = setup.manifest
        policy = try GatewayPolicy(manifest: manifest)
        let runtime = setup.configuration
        let leeway = Double(policy.leeway.components.seconds)
        if runtime.jwtRequireIssuerAudience, runtime.jwtIssuer == nil || runtime.jwtAudience == nil {
            throw FunctionError.permanent("jwt_not_configured",
                                          "SLUICE_JWT_REQUIRE_ISSUER_AUDIENCE is set: set SLUICE_JWT_ISSUER and SLUICE_JWT_AUDIENCE (a token for another service must not pass)")
        }
        do {
            verifier = JWTVerifier(try JWTVerifier.Configuration(runtime: runtime, leeway: leeway), logger: setup.logger)
        } catch {
            throw FunctionError.permanent("jwt_not_configured", "the gateway cannot check tokens: \(error.description)")
        }
        guard let signingKey = runtime.gatewaySigningKey else {
            throw FunctionError.permanent("gateway_key_not_configured",
                                          "the gateway cannot vouch for callers: set SLUICE_GATEWAY_SIGNING_KEY (`sluice keys` makes a pair)")
        }
        do {
            signer = try CallerAssertionSigner(base64: signingKey)
        } catch {
            throw FunctionError.permanent("gateway_key_not_configured", error.description)
        }
        redis = setup.dependencies.redis
        keys = setup.dependencies.keys
        hosted = setup.dependencies.hosted.isEmpty ? [manifest.name] : setup.dependencies.hosted
        upstreams = runtime.upstreams
        logger = setup.logger
        do {
            document = try OpenAPIDocument.build(policy: policy, operations: BuiltinFunctions.allOperations).serializedBytes
        } catch let missing as OpenAPIDocument.MissingOperation {
            throw ManifestError(.badValue, file: manifest.file, key: "config.routes",
                                message: "\(missing.method) \(missing.path): no function describes this route (a typo, or a function this build lacks)")
        }
        // Last: its HTTP client must be shut down (by its service), which an init that throws
        // after making it would never do.
        proxy = UpstreamProxy(timeouts: .init(connect: policy.connectTimeout, idle: policy.idleTimeout))
    }

    public var backgroundServices: [any Service] { [proxy] + verifier.backgroundServices }

    public func addMiddleware(to router: Router<SluiceRequestContext>) {
        router.add(middleware: GatewayMiddleware(gateway: self))
    }

    public func addRoutes(to router: Router<SluiceRequestContext>) {
        let document = ByteBuffer(bytes: self.document)
        router.get("/api/v1/openapi.json") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: document))
        }
    }

    /// Where a route's function is answered, or why it cannot be.
    enum Destination {
        case inProcess
        case upstream(String)
    }

    func destination(of function: String) throws(Problem) -> Destination {
        if hosted.contains(function) { return .inProcess }
        if let base = upstreams[function] { return .upstream(base.hasSuffix("/") ? String(base.dropLast()) : base) }
        throw Problem(.serviceUnavailable, code: "upstream_not_configured", detail: "the function that answers this route is not available")
    }
}

/// Headers only the gateway sets; taken off every incoming request first.
public enum GatewayHeaders {
    public static let subject = CallerHeaders.subject
    public static let roles = CallerHeaders.roles
    public static let assertion = CallerHeaders.assertion
    public static let requestID = HTTPField.Name("X-Request-Id")!
    public static let traceparent = TraceContext.header
    static let rateLimitLimit = HTTPField.Name("RateLimit-Limit")!
    static let rateLimitRemaining = HTTPField.Name("RateLimit-Remaining")!
    static let rateLimitReset = HTTPField.Name("RateLimit-Reset")!
    static let retryAfter = HTTPField.Name("Retry-After")!
    static let allow = HTTPField.Name("Allow")!
    static let wwwAuthenticate = HTTPField.Name("WWW-Authenticate")!
}

struct GatewayMiddleware: RouterMiddleware {
    typealias Context = SluiceRequestContext
    let gateway: GatewayFunction
    /// Set while the rate limiter's Redis is unreachable, so the warning is logged once.
    private final class OutageFlag: Sendable { let warned = Atomic<Bool>(false) }
    private let outage = OutageFlag()

    init(gateway: GatewayFunction) {
        self.gateway = gateway
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var head = request.head
        // Only what the gateway checked may name a caller.
        head.headerFields[GatewayHeaders.subject] = nil
        head.headerFields[GatewayHeaders.roles] = nil
        // One spelling of every path, before any check: the router drops empty segments, so
        // `//api/v1/audit` must meet the same check as `/api/v1/audit`.
        do {
            let canonical = try RequestTarget.canonical(request.uri.description)
            if canonical != request.uri.description { head.path = canonical }
        } catch {
            return try Problem(.badRequest, code: "invalid_path", detail: "the request path has no canonical form (\(error.rawValue))")
                .response(from: request, context: context)
        }
        let path = Request(head: head, body: request.body).uri.path
        guard path == "/api/v1" || path.hasPrefix("/api/v1/") else {
            // Not the API: the process's own routes (probes, metrics, `/invoke` under `sluice
            // dev`), which check any assertion themselves.
            return try await next(Request(head: head, body: request.body), context)
        }
        // Only the assertion the gateway signs below reaches an API route.
        head.headerFields[GatewayHeaders.assertion] = nil
        let requestID = Self.validRequestID(head.headerFields[GatewayHeaders.requestID]) ?? UUID().uuidString.lowercased()
        head.headerFields[GatewayHeaders.requestID] = requestID
        if TraceContext.validTraceparent(head.headerFields[GatewayHeaders.traceparent]) == nil {
            head.headerFields[GatewayHeaders.traceparent] = TraceContext.newTraceparent()
        }
        var context = context
        context.logger[metadataKey: "request_id"] = .string(requestID)

        var responseHeaders = HTTPFields()
        responseHeaders[GatewayHeaders.requestID] = requestID
        let started = ContinuousClock.now
        // The route's template (`/api/v1/jobs/{id}`), never the path: paths carry ids and subjects.
        var routeLabel = "unmatched"
        var response: Response
        do {
            response = try await route(Request(head: head, body: request.body), head: head, context: context, responseHeaders: &responseHeaders, routeLabel: &routeLabel, next: next)
        } catch let problem as Problem {
            var problem = problem
            for field in responseHeaders { problem.headers[field.name] = field.value }
            GatewayMetrics.request(method: request.method.rawValue, route: routeLabel, status: Int(problem.status.code), since: started)
            return try problem.response(from: Request(head: head, body: request.body), context: context)
        } catch {
            GatewayMetrics.request(method: request.method.rawValue, route: routeLabel, status: 500, since: started)
            throw error
        }
        for field in responseHeaders where response.headers[field.name] == nil {
            response.headers[field.name] = field.value
        }
        GatewayMetrics.request(method: request.method.rawValue, route: routeLabel, status: Int(response.status.code), since: started)
        return response
    }

    private func route(_ request: Request, head: HTTPRequest, context: Context, responseHeaders: inout HTTPFields, routeLabel: inout String,
                       next: (Request, Context) async throws -> Response) async throws -> Response {
        var head = head
        let policy = gateway.policy
        let route: GatewayPolicy.Route
        var caller = (subject: "anonymous", roles: Set<String>())
        switch policy.match(method: request.method.rawValue, path: request.uri.path) {
        case .notFound:
            throw Problem(.notFound, code: "not_found", detail: "no such route")
        case .methodNotAllowed(let methods):
            throw Problem(.methodNotAllowed, code: "method_not_allowed", detail: "the route does not take \(request.method.rawValue)",
                          headers: [GatewayHeaders.allow: methods.joined(separator: ", ")])
        case .route(let matched):
            route = matched
            routeLabel = matched.path
        }
        if !route.isPublic {
            let token: VerifiedToken
            do {
                token = try await gateway.verifier.verify(authorization: request.headers[.authorization])
            } catch {
                context.logger.debug("token refused", metadata: ["reason": .string(error.rawValue)])
                GatewayMetrics.authFailure(error.rawValue)
                if error == .keysUnavailable {
                    // The provider's key set has never come: the token may be good, so not 401.
                    throw Problem(.serviceUnavailable, code: "token_keys_unavailable", detail: error.clientDescription,
                                  headers: [GatewayHeaders.retryAfter: "5"])
                }
                throw Problem(.unauthorized, code: error == .missing ? "missing_token" : "invalid_token", detail: error.clientDescription,
                              headers: [GatewayHeaders.wwwAuthenticate: #"Bearer realm="sluice", error="invalid_token", error_description="\#(error.clientDescription)""#])
            }
            // Roles reach functions as a list, but a name that could be read as two (`x,admin`)
            // is refused here, before any check reads it.
            guard token.roles.allSatisfy(Caller.isValidRole) else {
                GatewayMetrics.authFailure("invalid_roles")
                throw Problem(.badRequest, code: "invalid_token",
                              detail: "the token's roles claim holds a name that is not 1 to 64 of a-z, 0-9, _, . and -",
                              extra: ["claim": "roles"])
            }
            guard !route.roles.isDisjoint(with: token.roles) else {
                GatewayMetrics.authFailure("forbidden")
                throw Problem(.forbidden, code: "forbidden", detail: "this route needs one of the roles: \(route.roles.sorted().joined(separator: ", "))")
            }
            if let restricted = policy.datasetRoles(forPath: request.uri.path), !token.roles.contains("admin"),
               restricted.roles.isDisjoint(with: token.roles) {
                GatewayMetrics.authFailure("forbidden")
                throw Problem(.forbidden, code: "forbidden",
                              detail: "the dataset \(restricted.dataset) needs one of the roles: \(restricted.roles.sorted().joined(separator: ", "))")
            }
            if let limit = policy.rateLimit(for: token.roles) {
                try await spend(limit, subject: token.subject, route: route.path, context: context, responseHeaders: &responseHeaders)
            }
            caller = (token.subject, token.roles)
        }
        // The body is bound by its digest when the gateway can hold it (up to 1 MiB with a
        // length, or a method without a body); a larger or unlengthed upload streams through
        // and is bound by the request alone.
        var body = request.body
        let binding: CallerAssertion.Body
        let length = head.headerFields[.contentLength].flatMap { Int($0) }
        if Self.bodiless.contains(request.method) || length.map({ $0 <= CallerAssertion.boundBodyLimit }) == true {
            let bytes = try await request.body.collect(upTo: CallerAssertion.boundBodyLimit)
            binding = .digest(of: bytes.readableBytesView)
            body = RequestBody(buffer: bytes)
        } else {
            binding = .streamed
        }
        // The function checks this, not a header anyone could send: for this request, this
        // body and the one function that answers it.
        head.headerFields[GatewayHeaders.assertion] = gateway.signer.sign(
            subject: caller.subject, roles: caller.roles, audience: [route.function], method: request.method.rawValue,
            target: request.uri.description, body: binding, requestID: head.headerFields[GatewayHeaders.requestID])
        // Only what functions read goes on: never the caller's token or cookies.
        head.headerFields = ForwardedHeaders.filter(head.headerFields)
        let forwarded = Request(head: head, body: body)
        switch try gateway.destination(of: route.function) {
        case .inProcess:
            return try await next(forwarded, context)
        case .upstream(let base):
            return try await gateway.proxy.forward(forwarded, to: base, logger: context.logger)
        }
    }

    /// Methods whose body, if any, the gateway always reads whole (up to the bound).
    static let bodiless: Set<HTTPRequest.Method> = [.get, .head, .delete, .options]

    /// Takes a token from the subject's bucket; 429 when it is empty. When Redis cannot be
    /// reached the request passes (a limiter outage must not take the API down) and a warning
    /// is logged once per outage.
    private func spend(_ limit: GatewayPolicy.RateLimit, subject: String, route: String, context: Context, responseHeaders: inout HTTPFields) async throws {
        let key = gateway.keys.rateLimit(SHA256.hex(subject.utf8))
        let decision: RedisClient.RateLimitDecision
        do {
            decision = try await gateway.redis.takeToken(key: key, rate: limit.perSecond, burst: limit.burst)
            outage.warned.store(false, ordering: .relaxed)
        } catch {
            if !outage.warned.exchange(true, ordering: .relaxed) {
                context.logger.warning("rate limiter unavailable; requests pass unlimited until Redis is back",
                                       metadata: ["error": .string("\(type(of: error))")])
            }
            return
        }
        responseHeaders[GatewayHeaders.rateLimitLimit] = String(limit.burst)
        responseHeaders[GatewayHeaders.rateLimitRemaining] = String(decision.remaining)
        responseHeaders[GatewayHeaders.rateLimitReset] = String(Self.wholeSeconds(decision.resetAfter))
        guard decision.allowed else {
            responseHeaders[GatewayHeaders.retryAfter] = String(max(1, Self.wholeSeconds(decision.retryAfter)))
            GatewayMetrics.rateLimited(route: route)
            throw Problem(.tooManyRequests, code: "rate_limited", detail: "too many requests; retry after the time in Retry-After")
        }
    }

    static func wholeSeconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return attoseconds > 0 ? seconds + 1 : seconds
    }

    /// A caller's request id when it is short and plain (letters, digits, `-`, `_`, `.`).
    static func validRequestID(_ value: String?) -> String? {
        guard let value, (1...128).contains(value.utf8.count),
              value.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
                  || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
                  || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) else { return nil }
        return value
    }
}

/// The gateway's metrics. Labels are route templates, methods, status codes and fixed reasons:
/// never a path, a subject or a token.
///
/// | name | type | labels |
/// |---|---|---|
/// | `sluice_gateway_requests_total` | counter | method, route, status |
/// | `sluice_gateway_request_duration_seconds` | histogram | route |
/// | `sluice_gateway_auth_failures_total` | counter | reason (`missing`, `expired`, `bad_signature`, …, `forbidden`) |
/// | `sluice_gateway_rate_limited_total` | counter | route |
enum GatewayMetrics {
    static func request(method: String, route: String, status: Int, since started: ContinuousClock.Instant) {
        Counter(label: "sluice_gateway_requests_total", dimensions: [("method", method), ("route", route), ("status", String(status))]).increment()
        Timer(label: "sluice_gateway_request_duration_seconds", dimensions: [("route", route)], preferredDisplayUnit: .seconds)
            .recordNanoseconds((ContinuousClock.now - started).nanoseconds)
    }

    static func authFailure(_ reason: String) {
        Counter(label: "sluice_gateway_auth_failures_total", dimensions: [("reason", reason)]).increment()
    }

    static func rateLimited(route: String) {
        Counter(label: "sluice_gateway_rate_limited_total", dimensions: [("route", route)]).increment()
    }
}
