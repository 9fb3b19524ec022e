import ArgumentParser
import Foundation
import Sluice
import SluiceHTTP

/// `sluice keys`: a new key pair for the gateway's caller assertions.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Print a new Ed25519 key pair for the gateway's caller assertions, as export lines.",
        discussion: """
            SLUICE_GATEWAY_SIGNING_KEY goes to the gateway only; SLUICE_GATEWAY_PUBLIC_KEY to every function, \
            which then answers only requests the gateway has checked. Keep the first in a secret of its own.
            """)

    func run() throws {
        let signer = CallerAssertionSigner.generate()
        print("export SLUICE_GATEWAY_SIGNING_KEY=\(signer.base64PrivateKey)")
        print("export SLUICE_GATEWAY_PUBLIC_KEY=\(signer.base64PublicKey)")
    }
}
