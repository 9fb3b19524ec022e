import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Sluice
import SluiceHTTP
import Testing

/// The function's side of the hand-over in process: a route behind ``CallerMiddleware`` that
/// answers the caller it was given and the body it read.
@Suite("Caller middleware, in process")
struct CallerMiddlewareTests {
    let signer = CallerAssertionSigner.generate()

    func application() -> some ApplicationProtocol {
        let router = Router(context: SluiceRequestContext.self)
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: CallerMiddleware(verifier: signer.verifier, functions: ["ingest"], logger: Logger(label: "test")))
        router.post("/echo") { request, context -> JSONValue in
            let body = try await request.body.collect(upTo: 1 << 20)
            return ["subject": .string(context.caller?.subject ?? ""),
                    "roles": .array((context.caller?.roles ?? []).sorted().map(JSONValue.string)),
                    "is_admin": .bool(context.caller?.has("admin") ?? false),
                    "subject_header": .string(request.headers[CallerHeaders.subject] ?? ""),
                    "body": .string(String(buffer: body))]
        }
        return Application(router: router)
    }

    func assertion(body: CallerAssertion.Body, roles: [String] = ["ingest"], audience: [String] = ["ingest"]) -> HTTPFields {
        [CallerHeaders.assertion: signer.sign(subject: "alice", roles: roles, audience: audience, method: "POST", target: "/echo",
                                              body: body, requestID: nil)]
    }

    func status(_ client: some TestClientProtocol, _ headers: HTTPFields, body: String) async throws -> (Int, JSONValue?) {
        try await client.execute(uri: "/echo", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
            (Int(response.status.code), try? JSONParser().parse(Array(response.body.readableBytesView)))
        }
    }

    @Test func rolesReachTheHandlerAsTheListTheGatewaySigned() async throws {
        try await application().test(.router) { client in
            var headers = assertion(body: .digest(of: Array("{}".utf8)), roles: ["ingest", "x,admin"])
            headers[CallerHeaders.subject] = "mallory"
            headers[CallerHeaders.roles] = "admin"
            let (code, answer) = try await status(client, headers, body: "{}")
            #expect(code == 200)
            #expect(answer?["roles"] == ["ingest", "x,admin"])
            #expect(answer?["is_admin"] == false, "a role is never split again")
            #expect(answer?["subject"] == "alice")
            #expect(answer?["subject_header"] == "", "the client's caller headers are removed")
        }
    }

    @Test func theBodyMustBeTheOneTheAssertionBinds() async throws {
        try await application().test(.router) { client in
            let bound = assertion(body: .digest(of: Array(#"{"a":1}"#.utf8)))
            let other = try await status(client, bound, body: #"{"a":2}"#).0
            #expect(other == 401, "another body")
            let fresh = assertion(body: .digest(of: Array(#"{"a":1}"#.utf8)))
            let (code, answer) = try await status(client, fresh, body: #"{"a":1}"#)
            #expect(code == 200)
            #expect(answer?["body"] == #"{"a":1}"#, "the handler reads the body that was checked")
            // A streamed binding says nothing of the bytes (the gateway makes one only for large uploads).
            let streamed = try await status(client, assertion(body: .streamed), body: "anything").0
            #expect(streamed == 200)
        }
    }

    @Test func anAssertionIsAcceptedOnceAndOnlyByItsFunction() async throws {
        try await application().test(.router) { client in
            let once = assertion(body: .digest(of: Array("x".utf8)))
            let first = try await status(client, once, body: "x").0
            let again = try await status(client, once, body: "x").0
            let elsewhere = try await status(client, assertion(body: .digest(of: Array("x".utf8)), audience: ["warehouse"]), body: "x").0
            #expect(first == 200)
            #expect(again == 401, "a replay")
            #expect(elsewhere == 401, "made for another function")
        }
    }
}
