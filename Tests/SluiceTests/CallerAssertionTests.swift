import Foundation
import HTTPTypes
@testable import SluiceHTTP
import Testing

@Suite("Caller assertions and request targets")
struct CallerAssertionTests {
    let signer = CallerAssertionSigner.generate()
    let now: Int64 = 1_800_000_000

    func signed(_ method: String = "GET", _ target: String = "/api/v1/jobs?limit=5", at time: Int64? = nil,
                audience: [String] = ["ingest"], body: CallerAssertion.Body = .digest(of: [UInt8]())) -> String {
        signer.sign(subject: "alice", roles: ["ingest", "analyst"], audience: audience, method: method, target: target, body: body,
                    requestID: "r-1", now: time ?? now)
    }

    func failure(_ header: String?, method: String = "GET", target: String = "/api/v1/jobs?limit=5", functions: Set<String> = ["ingest"],
                 at time: Int64? = nil, verifier: CallerAssertionVerifier? = nil) -> CallerAssertionFailure? {
        do {
            _ = try (verifier ?? signer.verifier).verify(header, method: method, target: target, functions: functions, now: time ?? now)
            return nil
        } catch {
            return error
        }
    }

    @Test func theGatewaysAssertionNamesTheCallerOfExactlyThatRequest() throws {
        let assertion = try signer.verifier.verify(signed(), method: "GET", target: "/api/v1/jobs?limit=5", functions: ["ingest"], now: now + 10)
        #expect(assertion.subject == "alice")
        #expect(assertion.roles == ["analyst", "ingest"])
        #expect(assertion.audience == ["ingest"])
        #expect(assertion.body == .sha256("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        #expect(assertion.requestID == "r-1")
        #expect(assertion.expiresAt == now + 60)
        #expect(assertion.id.utf8.count == 32)
        // Every assertion has an id of its own.
        #expect(try signer.verifier.verify(signed(), method: "GET", target: "/api/v1/jobs?limit=5", functions: ["ingest"], now: now).id != assertion.id)
    }

    @Test func everyOtherRequestTimeOrKeyIsRefused() {
        #expect(failure(nil) == .missing)
        #expect(failure("") == .missing)
        #expect(failure("sa1.e30") == .malformed)
        #expect(failure("xx1.e30.AAAA") == .malformed)
        #expect(failure(signed(), target: "/api/v1/jobs?limit=6") == .wrongRequest)
        #expect(failure(signed(), target: "/api/v1/jobs") == .wrongRequest)
        #expect(failure(signed(), method: "DELETE") == .wrongRequest)
        #expect(failure(signed(), verifier: CallerAssertionSigner.generate().verifier) == .badSignature)
        // A changed payload (roles raised) breaks the signature.
        let parts = signed().split(separator: ".").map(String.init)
        let raised = Base64URL.encode(Array(#"{"sub":"alice","roles":["admin"],"method":"GET","target":"/api/v1/jobs?limit=5","iat":1800000000,"exp":1800000060}"#.utf8))
        #expect(failure("\(parts[0]).\(raised).\(parts[2])") == .badSignature)
    }

    @Test func anAssertionLivesSixtySecondsWithFiveOfSkew() {
        #expect(failure(signed(), at: now + 60) == nil)
        #expect(failure(signed(), at: now + 65) == nil, "5 s of skew")
        #expect(failure(signed(), at: now + 66) == .expired)
        #expect(failure(signed(), at: now + 90) == .expired, "the old 60 + 30 is gone")
        #expect(failure(signed(), at: now - 5) == nil)
        #expect(failure(signed(), at: now - 6) == .notYetValid)
        // A signer configured for longer is refused, whatever the clock says.
        var lasting = signer
        lasting.lifetime = 3600
        let long = lasting.sign(subject: "alice", roles: [], audience: ["ingest"], method: "GET", target: "/api/v1/jobs?limit=5",
                                body: .digest(of: [UInt8]()), requestID: nil, now: now)
        #expect(failure(long, at: now + 1) == .malformed)
    }

    @Test func anAssertionIsForTheFunctionItNames() {
        #expect(failure(signed(audience: ["ingest"]), functions: ["warehouse"]) == .wrongFunction)
        #expect(failure(signed(audience: ["warehouse"]), functions: ["ingest"]) == .wrongFunction)
        // Under `sluice dev` one process hosts every function: an assertion for any of them is accepted there.
        #expect(failure(signed(audience: ["warehouse"]), functions: ["gateway", "ingest", "warehouse"]) == nil)
    }

    @Test func bodiesBindByDigestOrAsStreamed() {
        let digest = CallerAssertion.Body.digest(of: Array("abc".utf8))
        #expect(digest == .sha256("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        #expect(CallerAssertion.Body(wire: digest.wire) == digest)
        #expect(CallerAssertion.Body(wire: "stream") == .streamed)
        #expect(CallerAssertion.Body(wire: "sha256:XYZ") == nil)
        #expect(CallerAssertion.Body(wire: "md5:" + String(repeating: "0", count: 32)) == nil)
    }

    @Test func anAssertionIdIsAcceptedOnce() {
        let guard_ = CallerReplayGuard(capacity: 3)
        #expect(guard_.claim("id-1", until: now + 65, now: now))
        #expect(!guard_.claim("id-1", until: now + 65, now: now + 10), "a replay")
        #expect(guard_.claim("id-2", until: now + 65, now: now + 10))
        #expect(guard_.claim("id-3", until: now + 70, now: now + 10))
        #expect(!guard_.claim("id-4", until: now + 70, now: now + 10), "full: refused, never an old id forgotten")
        // Once expired an id is forgotten (it could not be accepted anyway), and room is made.
        #expect(guard_.claim("id-4", until: now + 140, now: now + 66))
        #expect(guard_.count == 2)
    }

    @Test func keysReadBackFromTheirEnvironmentForm() throws {
        let again = try CallerAssertionSigner(base64: signer.base64PrivateKey)
        let verifier = try CallerAssertionVerifier(base64: signer.base64PublicKey)
        #expect(throws: Never.self) {
            try verifier.verify(again.sign(subject: "s", roles: [], audience: ["validate"], method: "POST", target: "/invoke",
                                           body: .streamed, requestID: nil),
                                method: "POST", target: "/invoke", functions: ["validate"])
        }
        #expect(throws: CallerKeyError.self) { try CallerAssertionSigner(base64: "c2hvcnQ=") }
        #expect(throws: CallerKeyError.self) { try CallerAssertionVerifier(base64: "not base64!") }
    }

    @Test func roleNamesHaveOneAlphabet() {
        for good in ["admin", "ingest", "data.read", "team-a_2", String(repeating: "a", count: 64)] { #expect(Caller.isValidRole(good), "\(good)") }
        for bad in ["", "x,admin", "Admin", "a b", "a;b", "a\"b", "é", String(repeating: "a", count: 65)] { #expect(!Caller.isValidRole(bad), "\(bad)") }
    }

    @Test func onlyTheHeadersFunctionsReadAreForwarded() {
        let sent: HTTPFields = [
            .authorization: "Bearer secret", .cookie: "session=1", .proxyAuthorization: "Basic x",
            HTTPField.Name("X-Sluice-Subject")!: "admin", HTTPField.Name("X-Sluice-Roles")!: "admin", HTTPField.Name("X-Sluice-Debug")!: "1",
            .contentType: "application/x-ndjson", .contentLength: "12", .accept: "application/json",
            HTTPField.Name("traceparent")!: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", HTTPField.Name("tracestate")!: "a=b",
            HTTPField.Name("X-Request-Id")!: "r-1", HTTPField.Name("X-Callback-Url")!: "https://example.com/done",
            HTTPField.Name("X-Sluice-Assertion")!: "sa1.x.y", .expect: "100-continue", HTTPField.Name("Host")!: "gateway", HTTPField.Name("X-Forwarded-For")!: "10.0.0.1",
        ]
        let kept = ForwardedHeaders.filter(sent)
        #expect(Set(kept.map(\.name.canonicalName)) == [
            "content-type", "content-length", "accept", "traceparent", "tracestate", "x-request-id", "x-callback-url", "x-sluice-assertion",
        ])
        #expect(kept[.contentType] == "application/x-ndjson")
    }

    @Test func pathsHaveOneSpelling() throws {
        let same = ["//api/v1/audit", "/api//v1/audit", "/api/v1/./audit", "/./api/v1/audit", "/api/v1/audit/", "///api/v1//audit/."]
        for path in same { #expect(try RequestTarget.canonical(path) == "/api/v1/audit", "\(path)") }
        #expect(try RequestTarget.canonical("/api/v1/jobs?limit=5&x=//y") == "/api/v1/jobs?limit=5&x=//y")
        #expect(try RequestTarget.canonical("//?a") == "/?a")
        #expect(try RequestTarget.canonical("/api/v1/data/caf%C3%A9") == "/api/v1/data/caf%C3%A9")
        let refused: [(String, RequestTarget.Refusal)] = [
            ("/api/v1/../v1/audit", .dotDotSegment), ("/api/v1/data/..", .dotDotSegment),
            ("/api%2Fv1/audit", .encodedSeparator), ("/api/v1/%2e%2e/audit", .encodedSeparator), ("/api/v1/data/a%5cb", .encodedSeparator),
            ("/api/v1/data/%00", .encodedSeparator), ("/api/v1/data/%", .encodedSeparator), ("/api/v1/data/%zz", .encodedSeparator),
            ("/api/v1/data/a\\b", .forbiddenCharacter), ("/api/v1/data/a\u{1}b", .forbiddenCharacter),
            ("*", .notAPath), ("http://host/api/v1/audit", .notAPath), ("", .notAPath),
        ]
        for (path, reason) in refused {
            #expect(throws: reason, "\(path)") { try RequestTarget.canonical(path) }
        }
    }
}
