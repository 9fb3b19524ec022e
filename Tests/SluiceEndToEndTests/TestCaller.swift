import Foundation
import SluiceHTTP

/// The tests' gateway key: every process the tests start checks callers with its public half,
/// the gateways (and `sluice dev`) sign with it, and a test that calls a function's own port
/// directly plays the gateway with ``assertion(method:url:subject:roles:)``.
enum TestCaller {
    /// A fixed Ed25519 seed: the tests' key is no secret.
    static let signer: CallerAssertionSigner = {
        do { return try CallerAssertionSigner(base64: Data((0..<32).map { UInt8($0 * 7 + 3) }).base64EncodedString()) }
        catch { fatalError("the test key is malformed: \(error)") }
    }()
    static var publicKey: String { signer.base64PublicKey }
    static var signingKey: String { signer.base64PrivateKey }
    /// The header the assertion travels in.
    static let header = "X-Sluice-Assertion"

    /// The keys a `sluice` process with `arguments` gets: the public one always, the signing one
    /// for `serve gateway` and `dev`, which host the gateway.
    static func environment(for arguments: [String]) -> [String: String] {
        var environment = ["SLUICE_GATEWAY_PUBLIC_KEY": publicKey]
        if arguments.first == "dev" || Array(arguments.prefix(2)) == ["serve", "gateway"] {
            environment["SLUICE_GATEWAY_SIGNING_KEY"] = signingKey
        }
        return environment
    }

    /// The request target of `url` as the server receives it (path and query, encoded as sent).
    static func target(of url: String) -> String {
        guard let components = URLComponents(string: url) else { return "/" }
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        return components.percentEncodedQuery.map { "\(path)?\($0)" } ?? path
    }

    /// The functions the tests' processes host, by the names their manifests give them: an
    /// assertion names them all (the gateway names one), so that any of the tests' processes
    /// takes it. `/invoke/NAME` adds NAME.
    static let functions = ["calls", "enrich", "gateway", "ingest", "jobs", "load", "notify", "privacy", "quarantine", "transform",
                            "validate", "warehouse", "filter", "stamp", "sink", "fail", "intake", "score", "risk", "review"]

    /// An assertion as the gateway would make it for `method url` with `body`: bound by its
    /// digest up to the gateway's 1 MiB, else (and for `nil`, a body sent streamed) bound by the
    /// request alone, as the gateway binds a large upload.
    static func assertion(method: String, url: String, body: [UInt8]? = nil, subject: String = "e2e-test",
                          roles: [String] = ["admin", "analyst", "ingest"]) -> String {
        let target = target(of: url)
        var audience = functions
        if target.hasPrefix("/invoke/") { audience.append(String(target.dropFirst("/invoke/".count).prefix { $0 != "?" })) }
        return signer.sign(subject: subject, roles: roles, audience: audience, method: method.uppercased(), target: target,
                           body: body.flatMap { $0.count <= CallerAssertion.boundBodyLimit ? .digest(of: $0) : nil } ?? .streamed, requestID: nil)
    }
}
