import Foundation
import SluiceHTTP
import Testing

@Suite("Caller assertions and request targets")
struct CallerAssertionTests {
    let signer = CallerAssertionSigner.generate()
    let now: Int64 = 1_800_000_000

    func signed(_ method: String = "GET", _ target: String = "/api/v1/jobs?limit=5", at time: Int64? = nil) -> String {
        signer.sign(subject: "alice", roles: ["ingest", "analyst"], method: method, target: target, requestID: "r-1", now: time ?? now)
    }

    @Test func theGatewaysAssertionNamesTheCallerOfExactlyThatRequest() throws {
        let assertion = try signer.verifier.verify(signed(), method: "GET", target: "/api/v1/jobs?limit=5", now: now + 10)
        #expect(assertion.subject == "alice")
        #expect(assertion.roles == ["analyst", "ingest"])
        #expect(assertion.requestID == "r-1")
        #expect(assertion.expiresAt == now + signer.lifetime)
    }

    @Test func everyOtherRequestTimeOrKeyIsRefused() {
        let verifier = signer.verifier
        func failure(_ header: String?, method: String = "GET", target: String = "/api/v1/jobs?limit=5", at time: Int64? = nil,
                     verifier: CallerAssertionVerifier? = nil) -> CallerAssertionFailure? {
            do {
                _ = try (verifier ?? self.signer.verifier).verify(header, method: method, target: target, now: time ?? now)
                return nil
            } catch {
                return error
            }
        }
        #expect(failure(nil) == .missing)
        #expect(failure("") == .missing)
        #expect(failure("sa1.e30") == .malformed)
        #expect(failure("xx1.e30.AAAA") == .malformed)
        #expect(failure(signed(), target: "/api/v1/jobs?limit=6") == .wrongRequest)
        #expect(failure(signed(), target: "/api/v1/jobs") == .wrongRequest)
        #expect(failure(signed(), method: "DELETE") == .wrongRequest)
        #expect(failure(signed(), at: now + signer.lifetime + verifier.leeway + 1) == .expired)
        #expect(failure(signed(), at: now - verifier.leeway - 1) == .notYetValid)
        #expect(failure(signed(), verifier: CallerAssertionSigner.generate().verifier) == .badSignature)
        // A changed payload (roles raised) breaks the signature.
        let parts = signed().split(separator: ".").map(String.init)
        let raised = Base64URL.encode(Array(#"{"sub":"alice","roles":["admin"],"method":"GET","target":"/api/v1/jobs?limit=5","iat":1800000000,"exp":1800000060}"#.utf8))
        #expect(failure("\(parts[0]).\(raised).\(parts[2])") == .badSignature)
    }

    @Test func keysReadBackFromTheirEnvironmentForm() throws {
        let again = try CallerAssertionSigner(base64: signer.base64PrivateKey)
        let verifier = try CallerAssertionVerifier(base64: signer.base64PublicKey)
        #expect(throws: Never.self) { try verifier.verify(again.sign(subject: "s", roles: [], method: "POST", target: "/invoke", requestID: nil),
                                                          method: "POST", target: "/invoke") }
        #expect(throws: CallerKeyError.self) { try CallerAssertionSigner(base64: "c2hvcnQ=") }
        #expect(throws: CallerKeyError.self) { try CallerAssertionVerifier(base64: "not base64!") }
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
