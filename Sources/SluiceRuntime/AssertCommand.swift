import ArgumentParser
import Foundation
import Sluice
import SluiceHTTP

/// `sluice assert`: the caller assertion the gateway would hand a function, for an operator
/// who calls a function's own routes (`POST /invoke`) with the gateway's key in hand.
struct AssertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assert",
        abstract: "Print a caller assertion (the X-Sluice-Assertion header) signed with SLUICE_GATEWAY_SIGNING_KEY.",
        discussion: """
            Valid for 60 seconds and once, for exactly one method, target, body and function: \
            curl -H "X-Sluice-Assertion: $(sluice assert --method POST --target /invoke --function validate --data-file events.json --subject me --roles admin)" --data-binary @events.json …
            """)

    @Option(help: "The request's method.")
    var method: String = "POST"

    @Option(help: "The request target exactly as sent: path and query (/invoke, /api/v1/jobs?limit=5).")
    var target: String

    @Option(help: "The function the request is for (the name the process serving it hosts); comma-separated for several.")
    var function: String

    @Option(help: "The caller (sub).")
    var subject: String

    @Option(help: "Comma-separated roles.")
    var roles: String = ""

    @Option(help: "The request's body, to bind by its SHA-256.")
    var data: String?

    @Option(help: "A file holding the request's body, to bind by its SHA-256.")
    var dataFile: String?

    @Flag(help: "Bind no body: for an upload sent streamed (over 1 MiB, or without Content-Length).")
    var streamed = false

    @Option(help: "How many assertions to print, one a line, each with an id of its own (each is accepted once).")
    var count: Int = 1

    func run() throws {
        guard let key = Environment.configuration().gatewaySigningKey else {
            throw CommandFailure("set SLUICE_GATEWAY_SIGNING_KEY (the gateway's private key)")
        }
        let signer: CallerAssertionSigner
        do { signer = try CallerAssertionSigner(base64: key) } catch { throw CommandFailure(error.description) }
        let body: CallerAssertion.Body
        switch (data, dataFile, streamed) {
        case (let text?, nil, false):
            body = .digest(of: Array(text.utf8))
        case (nil, let path?, false):
            guard let bytes = FileManager.default.contents(atPath: path) else { throw CommandFailure("cannot read \(path)") }
            body = .digest(of: bytes)
        case (nil, nil, true):
            body = .streamed
        case (nil, nil, false) where ["GET", "HEAD", "DELETE"].contains(method.uppercased()):
            body = .digest(of: [UInt8]())
        case (nil, nil, false):
            throw CommandFailure("name the body the assertion is for: --data, --data-file, or --streamed")
        default:
            throw CommandFailure("give one of --data, --data-file and --streamed")
        }
        let functions = function.split(separator: ",").map(String.init)
        guard !functions.isEmpty else { throw CommandFailure("--function names at least one function") }
        guard (1...100_000).contains(count) else { throw CommandFailure("--count must be from 1 to 100000") }
        for _ in 0..<count {
            print(signer.sign(subject: subject, roles: roles.split(separator: ",").map(String.init), audience: functions,
                              method: method.uppercased(), target: target, body: body, requestID: nil))
        }
    }
}
