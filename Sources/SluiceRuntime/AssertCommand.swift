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
        discussion: "Valid for 60 seconds, for exactly one method and target: curl -H \"X-Sluice-Assertion: $(sluice assert --method POST --target /invoke --subject me --roles admin)\" …")

    @Option(help: "The request's method.")
    var method: String = "POST"

    @Option(help: "The request target exactly as sent: path and query (/invoke, /api/v1/jobs?limit=5).")
    var target: String

    @Option(help: "The caller (sub).")
    var subject: String

    @Option(help: "Comma-separated roles.")
    var roles: String = ""

    func run() throws {
        guard let key = Environment.configuration().gatewaySigningKey else {
            throw CommandFailure("set SLUICE_GATEWAY_SIGNING_KEY (the gateway's private key)")
        }
        let signer: CallerAssertionSigner
        do { signer = try CallerAssertionSigner(base64: key) } catch { throw CommandFailure(error.description) }
        print(signer.sign(subject: subject, roles: roles.split(separator: ",").map(String.init), method: method.uppercased(),
                          target: target, requestID: nil))
    }
}
