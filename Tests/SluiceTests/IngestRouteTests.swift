import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Sluice
import SluiceFunctions
import SluiceHTTP
import SluicePostgres
import SluiceRedis
import Testing

/// Ingest's routes in process (HummingbirdTesting's router mode): every answer that needs no
/// server, checked as a client sees it — status, `application/problem+json`, the stable code
/// and the field it names. Redis and PostgreSQL point at a port nothing listens on, so the
/// answers that need them are the store-unavailable ones.
@Suite("Ingest routes, in process")
struct IngestRouteTests {
    static let signer = CallerAssertionSigner.generate()

    func application() async throws -> some ApplicationProtocol {
        let manifest = Manifest(name: "ingest", handler: "ingest", triggers: [.http], outputs: ["validate"],
                                config: ["max_body_bytes": 1_000, "read_all_jobs": ["analyst"]])
        let dependencies = PipelineDependencies(
            redis: RedisClient(endpoint: try RedisEndpoint(url: "redis://127.0.0.1:1"), threadPool: .singleton),
            postgres: PostgresPool(url: "postgres://127.0.0.1:1/none", threadPool: .singleton),
            manifests: ManifestLoader(functionsDirectory: "/nonexistent"))
        let ingest = try await IngestFunction(setup: PipelineSetup(manifest: manifest, logger: Logger(label: "test"),
                                                                   dependencies: dependencies, registry: BuiltinFunctions.registry()))
        let router = Router(context: SluiceRequestContext.self)
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: CallerMiddleware(verifier: Self.signer.verifier, functions: ["ingest"], logger: Logger(label: "test")))
        ingest.addMiddleware(to: router)
        ingest.addRoutes(to: router)
        return Application(router: router)
    }

    /// The headers of a request the gateway let through for `roles`.
    func caller(_ method: HTTPRequest.Method, _ target: String, roles: [String] = ["ingest"], more: HTTPFields = [:]) -> HTTPFields {
        var headers = more
        headers[CallerHeaders.assertion] = Self.signer.sign(subject: "route-test", roles: roles, audience: ["ingest"], method: method.rawValue,
                                                            target: target, body: .streamed, requestID: nil)
        return headers
    }

    /// The problem a response holds: its status, code and the whole object.
    func problem(_ response: TestResponse) throws -> (status: Int, code: String?, body: JSONValue) {
        #expect(response.headers[.contentType] == "application/problem+json")
        let body = try JSONParser().parse(Array(response.body.readableBytesView))
        return (Int(response.status.code), body["code"]?.stringValue, body)
    }

    @Test func aRequestTheGatewayDidNotVouchForIsRefused() async throws {
        try await application().test(.router) { client in
            try await client.execute(uri: "/api/v1/ingest", method: .post, body: ByteBuffer(string: "{}\n")) { response in
                let answer = try problem(response)
                #expect(answer.status == 401)
                #expect(answer.code == "caller_unverified")
            }
            // An assertion made for another route does not open this one.
            try await client.execute(uri: "/api/v1/jobs", method: .get, headers: caller(.get, "/api/v1/ingest")) { response in
                let answer = try problem(response)
                #expect(answer.status == 401)
            }
        }
    }

    @Test func uploadsThatCannotBeAcceptedAreToldWhy() async throws {
        try await application().test(.router) { client in
            let target = "/api/v1/ingest"
            try await client.execute(uri: target, method: .post, headers: caller(.post, target, more: [.contentType: "application/pdf"]),
                                     body: ByteBuffer(string: "%PDF")) { response in
                let answer = try problem(response)
                #expect(answer.status == 415)
                #expect(answer.code == "unsupported_format")
            }
            let large = String(repeating: "{}\n", count: 700)
            try await client.execute(uri: target, method: .post,
                                     headers: caller(.post, target, more: [.contentType: "application/x-ndjson", .contentLength: String(large.utf8.count)]),
                                     body: ByteBuffer(string: large)) { response in
                let answer = try problem(response)
                #expect(answer.status == 413)
                #expect(answer.code == "body_too_large")
                #expect(answer.body["limit"]?.intValue == 1_000)
            }
            // The job store is down: no job is promised.
            try await client.execute(uri: target, method: .post, headers: caller(.post, target, more: [.contentType: "application/x-ndjson"]),
                                     body: ByteBuffer(string: "{\"id\": 1}\n")) { response in
                let answer = try problem(response)
                #expect(answer.status == 503)
                #expect(answer.code == "ingest_unavailable")
            }
        }
    }

    @Test func badPaginationParametersNameTheParameter() async throws {
        try await application().test(.router) { client in
            for (query, parameter) in [("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"),
                                       ("status=done", "status"), ("before=not-a-job", "before")] {
                let target = "/api/v1/jobs?\(query)"
                try await client.execute(uri: target, method: .get, headers: caller(.get, target)) { response in
                    let answer = try problem(response)
                    #expect(answer.status == 400, "\(query)")
                    #expect(answer.code == "invalid_parameter", "\(query)")
                    #expect(answer.body["parameter"]?.stringValue == parameter, "\(query)")
                }
            }
            // Good parameters reach the store, which is down.
            let target = "/api/v1/jobs?limit=10&status=completed"
            try await client.execute(uri: target, method: .get, headers: caller(.get, target)) { response in
                let answer = try problem(response)
                #expect(answer.status == 503)
                #expect(answer.code == "jobs_unavailable")
            }
        }
    }

    @Test func aJobIdThatIsNotOneIsNotFound() async throws {
        try await application().test(.router) { client in
            for method in [HTTPRequest.Method.get, .delete] {
                let target = "/api/v1/jobs/not-a-uuid"
                try await client.execute(uri: target, method: method, headers: caller(method, target)) { response in
                    let answer = try problem(response)
                    #expect(answer.status == 404)
                    #expect(answer.code == "job_not_found")
                }
            }
            let target = "/api/v1/jobs/6f1c2e4a-0000-4000-8000-000000000001"
            try await client.execute(uri: target, method: .get, headers: caller(.get, target)) { response in
                let answer = try problem(response)
                #expect(answer.code == "jobs_unavailable")
            }
        }
    }

    @Test func theDryRunAndTheRecordRouteRefuseWhatTheyCannotRun() async throws {
        try await application().test(.router) { client in
            var target = "/api/v1/process/transform"
            try await client.execute(uri: target, method: .post, headers: caller(.post, target), body: ByteBuffer(string: "[]")) { response in
                let answer = try problem(response)
                #expect(answer.status == 503)
                #expect(answer.code == "not_configured")
            }
            target = "/api/v1/data"
            try await client.execute(uri: target, method: .post, headers: caller(.post, target, more: [.contentType: "application/json"]),
                                     body: ByteBuffer(string: "[1, 2]")) { response in
                let answer = try problem(response)
                #expect(answer.status == 400)
                #expect(answer.code == "invalid_record")
            }
        }
    }
}
