import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Sluice
import Synchronization
import SluiceFunctions
import SluiceHTTP
import SluicePostgres
import SluiceRedis
import Testing

/// The gateway's checks in process, as `sluice dev` hosts it: the shipped gateway manifest and
/// ingest behind it in one router, HummingbirdTesting's router mode, tokens signed here. Redis
/// and PostgreSQL point at a port nothing listens on: the rate limiter lets requests pass while
/// it is away, and ingest answers what it can without its stores.
@Suite("Gateway routes, in process")
struct GatewayRouteTests {
    static let secret = "an in-process test secret of 32+ bytes"
    static let signer = CallerAssertionSigner.generate()
    static let functions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../functions").standardized.path

    /// The headers of every request that reached the functions' side of the router.
    final class SeenHeaders: Sendable {
        let fields = Mutex<[HTTPFields]>([])
    }

    /// Records what reaches the routes, after the gateway and the caller check.
    struct RecordHeaders: RouterMiddleware {
        let seen: SeenHeaders
        func handle(_ request: Request, context: SluiceRequestContext,
                    next: (Request, SluiceRequestContext) async throws -> Response) async throws -> Response {
            seen.fields.withLock { $0.append(request.headers) }
            return try await next(request, context)
        }
    }

    func application(seen: SeenHeaders? = nil) async throws -> some ApplicationProtocol {
        var configuration = RuntimeConfiguration()
        configuration.jwtSecret = Self.secret
        configuration.gatewaySigningKey = Self.signer.base64PrivateKey
        configuration.pseudonymKey = "an in-process test pseudonym key"  // validate's pii-mask, in ingest's dry run
        let loader = ManifestLoader(functionsDirectory: Self.functions)
        let dependencies = PipelineDependencies(
            redis: RedisClient(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:1"), threadPool: .singleton),
            postgres: PostgresPool(url: "postgres://127.0.0.1:1/none", threadPool: .singleton),
            manifests: loader, hosted: ["gateway", "ingest"])
        let registry = BuiltinFunctions.registry()
        let router = Router(context: SluiceRequestContext.self)
        router.add(middleware: ProblemMiddleware())
        var functions: [any HTTPFunction] = []
        // The gateway last: its proxy's client must reach its service to be shut down.
        for name in ["ingest", "gateway"] {
            let setup = PipelineSetup(manifest: try loader.load(name), logger: Logger(label: "test"), configuration: configuration,
                                      dependencies: dependencies, registry: registry)
            functions.append(try #require(try await registry.makeHandler(setup) as? any HTTPFunction))
        }
        for function in functions { function.addMiddleware(to: router) }
        router.add(middleware: CallerMiddleware(verifier: Self.signer.verifier, functions: ["gateway", "ingest"], logger: Logger(label: "test")))
        if let seen { router.add(middleware: RecordHeaders(seen: seen)) }
        for function in functions { function.addRoutes(to: router) }
        // The functions' services (the gateway's proxy client among them) run, and stop, with the test.
        return Application(router: router, services: functions.flatMap(\.backgroundServices))
    }

    func token(roles: [String], secret: String = Self.secret, expiresIn: Double = 300) throws -> HTTPFields {
        let claims: JSONObject = ["sub": "route-test", "roles": .array(roles.map(JSONValue.string)),
                                  "exp": .double(Date().timeIntervalSince1970 + expiresIn)]
        return [.authorization: "Bearer " + (try JWTSigner.sign(claims: claims, algorithm: .hs256, key: Array(secret.utf8)))]
    }

    func problem(_ response: TestResponse) throws -> (status: Int, code: String?) {
        #expect(response.headers[.contentType] == "application/problem+json")
        let body = try JSONParser().parse(Array(response.body.readableBytesView))
        return (Int(response.status.code), body["code"]?.stringValue)
    }

    @Test func tokensAreCheckedBeforeAnyFunctionSeesTheRequest() async throws {
        try await application().test(.router) { client in
            try await client.execute(uri: "/api/v1/jobs", method: .get) { response in
                let answer = try problem(response)
                #expect(answer.status == 401)
                #expect(answer.code == "missing_token")
                #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer realm=\"sluice\"") == true)
            }
            for headers in [try token(roles: ["admin"], secret: "another secret that is 32+ bytes long"),
                            try token(roles: ["admin"], expiresIn: -600), [.authorization: "Bearer not.a.token"]] {
                try await client.execute(uri: "/api/v1/jobs", method: .get, headers: headers) { response in
                    let answer = try problem(response)
                    #expect(answer.status == 401)
                    #expect(answer.code == "invalid_token")
                }
            }
            // A good token without the route's role.
            try await client.execute(uri: "/api/v1/audit", method: .get, headers: try token(roles: ["ingest"])) { response in
                let answer = try problem(response)
                #expect(answer.status == 403)
                #expect(answer.code == "forbidden")
            }
        }
    }

    @Test func unknownRoutesMethodsAndPathsAreRefused() async throws {
        try await application().test(.router) { client in
            let admin = try token(roles: ["admin", "ingest", "analyst"])
            try await client.execute(uri: "/api/v1/nothing-here", method: .get, headers: admin) { response in
                let answer = try problem(response)
                #expect(answer.status == 404)
                #expect(answer.code == "not_found")
            }
            try await client.execute(uri: "/api/v1/ingest", method: .get, headers: admin) { response in
                let answer = try problem(response)
                #expect(answer.status == 405)
                #expect(answer.code == "method_not_allowed")
                #expect(response.headers[.allow] == "POST")
            }
            try await client.execute(uri: "/api/v1/jobs/%2e%2e/audit", method: .get, headers: admin) { response in
                let answer = try problem(response)
                #expect(answer.status == 400)
                #expect(answer.code == "invalid_path")
            }
        }
    }

    @Test func anAllowedRequestReachesTheFunctionVouchedFor() async throws {
        try await application().test(.router) { client in
            // The OpenAPI document is public.
            try await client.execute(uri: "/api/v1/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                let document = try JSONParser().parse(Array(response.body.readableBytesView))
                #expect(document["openapi"]?.stringValue?.hasPrefix("3.") == true)
            }
            // Ingest answers (its own 400): the gateway's assertion satisfied its caller check,
            // and the rate limiter, with Redis away, let the request pass.
            try await client.execute(uri: "/api/v1/jobs?limit=0", method: .get, headers: try token(roles: ["ingest"])) { response in
                let answer = try problem(response)
                #expect(answer.status == 400)
                #expect(answer.code == "invalid_parameter")
            }
        }
    }

    @Test func aRoleNameOutsideTheAlphabetIsRefusedNamingTheClaim() async throws {
        try await application().test(.router) { client in
            // Read as `ingest` and `x,admin` by the gateway, it once became admin in every function.
            try await client.execute(uri: "/api/v1/jobs?limit=0", method: .get, headers: try token(roles: ["ingest", "x,admin"])) { response in
                #expect(response.status == .badRequest)
                #expect(response.headers[.contentType] == "application/problem+json")
                let body = try JSONParser().parse(Array(response.body.readableBytesView))
                #expect(body["code"] == "invalid_token")
                #expect(body["claim"] == "roles")
            }
        }
    }

    @Test func functionsHostedWithTheGatewayNeverSeeTheCallersCredentials() async throws {
        let seen = SeenHeaders()
        try await application(seen: seen).test(.router) { client in
            var headers = try token(roles: ["ingest"])
            headers[.cookie] = "session=secret"
            headers[.proxyAuthorization] = "Basic c2VjcmV0"
            headers[HTTPField.Name("X-Sluice-Debug")!] = "1"
            headers[HTTPField.Name("X-Sluice-Roles")!] = "admin"
            headers[HTTPField.Name("tracestate")!] = "vendor=1"
            try await client.execute(uri: "/api/v1/jobs?limit=0", method: .get, headers: headers) { response in
                #expect(response.status == .badRequest, "ingest answered")
            }
        }
        let reached = try #require(seen.fields.withLock { $0 }.last)
        let names = Set(reached.map(\.name.canonicalName))
        for gone in ["authorization", "cookie", "proxy-authorization", "x-sluice-debug", "x-sluice-roles", "x-sluice-assertion"] {
            #expect(!names.contains(gone), "\(gone)")
        }
        #expect(reached[HTTPField.Name("tracestate")!] == "vendor=1")
        #expect(reached[HTTPField.Name("X-Request-Id")!] != nil)
        #expect(reached[HTTPField.Name("traceparent")!] != nil)
    }
}
