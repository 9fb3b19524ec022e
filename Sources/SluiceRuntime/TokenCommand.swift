import ArgumentParser
import Foundation
import Sluice
import SluiceHTTP

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a signed JWT for local use: HS256 with SLUICE_JWT_SECRET, or RS256/ES256 with --key PRIVATE.pem.")

    @Option(help: "The token's subject (sub).")
    var subject: String

    @Option(help: "Comma-separated roles (ingest, analyst, admin).")
    var roles: String

    @Option(help: "Seconds until the token expires.")
    var ttl: Int = 3600

    @Option(help: "A PEM private key (RSA for RS256, EC P-256 for ES256) instead of SLUICE_JWT_SECRET.")
    var key: String?

    func validate() throws {
        guard !subject.isEmpty else { throw ValidationError("--subject must not be empty") }
        guard ttl > 0 else { throw ValidationError("--ttl must be a positive number of seconds") }
    }

    func run() throws {
        let runtime = Environment.configuration()
        let algorithm: JWTAlgorithm
        let keyBytes: [UInt8]
        if let key {
            guard let data = FileManager.default.contents(atPath: key) else { throw CommandFailure("--key: cannot read \(key)") }
            guard let detected = JWTAlgorithm.forKey(pem: String(decoding: data, as: UTF8.self)) else {
                throw CommandFailure("--key: \(key) is not an RSA or EC private key in PEM form")
            }
            algorithm = detected
            keyBytes = [UInt8](data)
        } else if let secret = runtime.jwtSecret {
            algorithm = .hs256
            keyBytes = Array(secret.utf8)
        } else {
            throw CommandFailure("set SLUICE_JWT_SECRET, or pass --key PRIVATE.pem for RS256/ES256")
        }
        let now = Int64(Date().timeIntervalSince1970)
        var claims: JSONObject = [
            "sub": .string(subject),
            "roles": .array(roles.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 != .string("") }),
            "iat": .int(now),
            "exp": .int(now + Int64(ttl)),
            "jti": .string(UUID().uuidString.lowercased()),
        ]
        if let issuer = runtime.jwtIssuer { claims["iss"] = .string(issuer) }
        if let audience = runtime.jwtAudience { claims["aud"] = .string(audience) }
        do {
            print(try JWTSigner.sign(claims: claims, algorithm: algorithm, key: keyBytes))
        } catch {
            throw CommandFailure(error.description)
        }
    }
}
