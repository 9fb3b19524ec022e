import Foundation
import Logging

/// Process-wide settings read once from the environment at the edge (the CLI).
public struct RuntimeConfiguration: Sendable, Equatable {
    /// `SLUICE_REDIS_URL`, default `redis://127.0.0.1:6379/0`.
    public var redisURL: String
    /// `SLUICE_DATABASE_URL`, default `postgres://sluice@127.0.0.1:5432/sluice`.
    public var databaseURL: String
    /// `SLUICE_FUNCTIONS_DIR`, default `./functions`.
    public var functionsDirectory: String
    /// `SLUICE_DATASETS_DIR`, default the `datasets` folder beside the functions directory:
    /// the datasets declared in files (``DatasetSpec``), registered at start.
    public var datasetsDirectory: String {
        get { declaredDatasetsDirectory ?? Self.sibling(of: functionsDirectory, named: "datasets") }
        set { declaredDatasetsDirectory = newValue }
    }
    private var declaredDatasetsDirectory: String?
    /// Restart a function's process when a file in its folder changes (`sluice dev` sets it).
    public var reloadFunctionFiles = false
    /// Run a process function's `runtime.build` before starting it (`sluice dev` and `sluice
    /// invoke` set it; `sluice serve` runs what the image holds).
    public var buildFunctions = false
    /// `SLUICE_LOG_LEVEL`, default `info`.
    public var logLevel: Logger.Level
    /// `SLUICE_LOG_FORMAT`: `json` (the default: one JSON object per line) or `text`.
    public var logFormat: LogFormat = .json
    /// The hash tag every Redis key of the pipeline shares, so that the forward-and-ack
    /// script touches one Redis Cluster slot. Default `sluice`.
    public var hashTag: String
    /// `SLUICE_JWT_SECRET`: the HS256 secret. Never logged.
    public var jwtSecret: String?
    /// `SLUICE_JWT_PUBLIC_KEY`: the path of a PEM public key (RS256 or ES256, read from the key).
    public var jwtPublicKeyPath: String?
    /// `SLUICE_JWT_ISSUER` and `SLUICE_JWT_AUDIENCE`: checked when set; required with a key set.
    public var jwtIssuer: String?
    public var jwtAudience: String?
    /// `SLUICE_GATEWAY_SIGNING_KEY`: the gateway's Ed25519 private key (32 bytes, base64), with
    /// which it signs the caller assertion every function checks. Only the gateway holds it.
    /// Never logged.
    public var gatewaySigningKey: String?
    /// `SLUICE_GATEWAY_PUBLIC_KEY`: its public half, which every function holds to check the
    /// gateway's assertions.
    public var gatewayPublicKey: String?
    /// `SLUICE_JWT_JWKS_URL`: an OAuth 2.0 / OpenID Connect provider's JSON Web Key Set (RS256
    /// and ES256 keys, chosen by the token's `kid`, refreshed without a restart).
    public var jwtJWKSURL: String?
    /// `SLUICE_JWT_DISCOVERY_URL`: the provider's OpenID Connect discovery document, whose
    /// `jwks_uri` names the key set.
    public var jwtDiscoveryURL: String?
    /// `SLUICE_JWT_DISCOVERY` (`on`/`off`): `on` reads the discovery document at
    /// `SLUICE_JWT_ISSUER` + `/.well-known/openid-configuration`.
    public var jwtDiscovery: String?
    /// `SLUICE_JWT_JWKS_REFRESH` (a duration, 1s to 1h): how often the key set is fetched
    /// again; default 5m.
    public var jwtJWKSRefresh: String?
    /// `SLUICE_UPSTREAM_<NAME>`: where the gateway finds function NAME (lowercased, `_` → `-`)
    /// when it runs in another process.
    public var upstreams: [String: String] = [:]
    /// `SLUICE_PSEUDONYM_KEY`: the HMAC key of the `pii-mask` middleware's pseudonyms. Never logged.
    public var pseudonymKey: String?
    /// `SLUICE_WEBHOOK_URL`: where notify POSTs every job's end. Never logged (it may hold a token).
    public var webhookURL: String?
    /// `SLUICE_WEBHOOK_SECRET`: the HMAC key of webhooks' `Sluice-Signature`. Never logged.
    public var webhookSecret: String?
    /// `SLUICE_SLACK_WEBHOOK_URL`: a Slack incoming webhook. A secret: never logged.
    public var slackWebhookURL: String?
    /// `SLUICE_SMTP_URL` (`smtp://host:port`, `?starttls=required|try|off`, or `smtps://`). Never logged.
    public var smtpURL: String?
    /// `SLUICE_NOTIFY_EMAIL_FROM` and `SLUICE_NOTIFY_EMAIL_TO` (comma-separated).
    public var emailFrom: String?
    public var emailTo: [String] = []
    /// `SLUICE_CALLBACK_ALLOW_HOSTS` (comma-separated `host` or `host:port`, IPv6 in brackets,
    /// `*` for any): callback URLs given by callers may name these even when they are private or
    /// loopback. An entry matches the URL's host as written (case-insensitive), not the address
    /// it resolves to: `127.0.0.1` does not allow `127.1` or `localhost`.
    public var callbackAllowHosts: [String] = []
    /// `SLUICE_FUNCTION_URL`: the function's process runs beside Sluice (a sidecar in the same
    /// pod, as `sluice render` deploys it) at this address, instead of the manifest's `command`
    /// being started here (`protocol: http`). Its bearer token is `SLUICE_FUNCTION_TOKEN`.
    public var functionURL: String?
    /// `SLUICE_LAMBDA_API_PORT`: the Lambda Runtime API is served on 127.0.0.1 at this port to a
    /// process beside Sluice (a sidecar sharing the pod's network), instead of the manifest's
    /// `command` being started here (`protocol: lambda`).
    public var lambdaAPIPort: Int?
    /// `SLUICE_FUNCTION_USER`: the user a function's process and its build run as (a name,
    /// `UID` or `UID:GID`; `same` for Sluice's own). Unset, a root Sluice uses `nobody`.
    public var functionUser: String?
    /// `SLUICE_METRICS_PORT`: when set, `/metrics` is served on this port only, not on the
    /// function's HTTP port (which, for the gateway, is the published one).
    public var metricsPort: Int?
    /// `SLUICE_JWT_REQUIRE_ISSUER_AUDIENCE` (`true`): the gateway refuses to start unless
    /// `SLUICE_JWT_ISSUER` and `SLUICE_JWT_AUDIENCE` are set (the rendered deployments set it).
    public var jwtRequireIssuerAudience = false
    /// `SLUICE_HTTP_IDLE_TIMEOUT` (a duration: `60s`, `500ms`), default 60 s: an HTTP connection
    /// that sends nothing the parser can use for this long is closed, so that a client sending
    /// its headers a byte at a time (slow-loris) or stalling in its body holds no connection
    /// for ever. A request being answered is never cut.
    public var httpIdleTimeout: Duration = .seconds(60)

    /// Defaults as documented above.
    public init(
        redisURL: String = "redis://127.0.0.1:6379/0",
        databaseURL: String = "postgres://sluice@127.0.0.1:5432/sluice",
        functionsDirectory: String = "./functions",
        logLevel: Logger.Level = .info,
        hashTag: String = "sluice"
    ) {
        self.redisURL = redisURL
        self.databaseURL = databaseURL
        self.functionsDirectory = functionsDirectory
        self.logLevel = logLevel
        self.hashTag = hashTag
    }

    /// Reads the configuration from environment variables, defaults for unset ones.
    public init(environment: [String: String]) {
        self.init()
        if let v = environment["SLUICE_REDIS_URL"], !v.isEmpty { redisURL = v }
        if let v = environment["SLUICE_DATABASE_URL"], !v.isEmpty { databaseURL = v }
        if let v = environment["SLUICE_FUNCTIONS_DIR"], !v.isEmpty { functionsDirectory = v }
        if let v = environment["SLUICE_DATASETS_DIR"], !v.isEmpty { datasetsDirectory = v }
        if let v = environment["SLUICE_LOG_LEVEL"], let level = Logger.Level(rawValue: v.lowercased()) { logLevel = level }
        if let v = environment["SLUICE_LOG_FORMAT"], let format = LogFormat(rawValue: v.lowercased()) { logFormat = format }
        if let v = environment["SLUICE_JWT_SECRET"], !v.isEmpty { jwtSecret = v }
        if let v = environment["SLUICE_JWT_PUBLIC_KEY"], !v.isEmpty { jwtPublicKeyPath = v }
        if let v = environment["SLUICE_JWT_ISSUER"], !v.isEmpty { jwtIssuer = v }
        if let v = environment["SLUICE_JWT_AUDIENCE"], !v.isEmpty { jwtAudience = v }
        if let v = environment["SLUICE_GATEWAY_SIGNING_KEY"], !v.isEmpty { gatewaySigningKey = v }
        if let v = environment["SLUICE_GATEWAY_PUBLIC_KEY"], !v.isEmpty { gatewayPublicKey = v }
        if let v = environment["SLUICE_JWT_JWKS_URL"], !v.isEmpty { jwtJWKSURL = v }
        if let v = environment["SLUICE_JWT_DISCOVERY_URL"], !v.isEmpty { jwtDiscoveryURL = v }
        if let v = environment["SLUICE_JWT_DISCOVERY"], !v.isEmpty { jwtDiscovery = v }
        if let v = environment["SLUICE_JWT_JWKS_REFRESH"], !v.isEmpty { jwtJWKSRefresh = v }
        if let v = environment["SLUICE_PSEUDONYM_KEY"], !v.isEmpty { pseudonymKey = v }
        if let v = environment["SLUICE_WEBHOOK_URL"], !v.isEmpty { webhookURL = v }
        if let v = environment["SLUICE_WEBHOOK_SECRET"], !v.isEmpty { webhookSecret = v }
        if let v = environment["SLUICE_SLACK_WEBHOOK_URL"], !v.isEmpty { slackWebhookURL = v }
        if let v = environment["SLUICE_SMTP_URL"], !v.isEmpty { smtpURL = v }
        if let v = environment["SLUICE_NOTIFY_EMAIL_FROM"], !v.isEmpty { emailFrom = v }
        func list(_ text: String?) -> [String] {
            (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        emailTo = list(environment["SLUICE_NOTIFY_EMAIL_TO"])
        callbackAllowHosts = list(environment["SLUICE_CALLBACK_ALLOW_HOSTS"])
        if let v = environment["SLUICE_METRICS_PORT"], let port = Int(v), (1...65535).contains(port) { metricsPort = port }
        if let v = environment["SLUICE_FUNCTION_URL"], !v.isEmpty { functionURL = v.hasSuffix("/") ? String(v.dropLast()) : v }
        if let v = environment["SLUICE_FUNCTION_USER"], !v.isEmpty { functionUser = v }
        if let v = environment["SLUICE_LAMBDA_API_PORT"], let port = Int(v), (1...65535).contains(port) { lambdaAPIPort = port }
        if let v = environment["SLUICE_JWT_REQUIRE_ISSUER_AUDIENCE"] { jwtRequireIssuerAudience = ["true", "1", "yes", "on"].contains(v.lowercased()) }
        if let v = environment["SLUICE_HTTP_IDLE_TIMEOUT"], let timeout = DurationParser.parse(v), timeout > .zero { httpIdleTimeout = timeout }
        let prefix = "SLUICE_UPSTREAM_"
        for (key, value) in environment where key.hasPrefix(prefix) && !value.isEmpty {
            let name = key.dropFirst(prefix.count).lowercased().replacingOccurrences(of: "_", with: "-")
            upstreams[name] = value
        }
    }
}

extension RuntimeConfiguration {
    /// Whether the gateway's tokens are checked with a provider's key set (a JWKS URL or
    /// discovery), so no HS256 secret is wanted.
    public var jwtUsesKeySet: Bool {
        jwtJWKSURL != nil || jwtDiscoveryURL != nil || ["on", "true", "yes", "1"].contains(jwtDiscovery?.lowercased() ?? "")
    }
}

extension RuntimeConfiguration: CustomStringConvertible {
    /// The settings without secrets (the JWT secret is shown as set or not).
    public var description: String {
        "RuntimeConfiguration(redis: \(redisURL.redactingPassword), database: \(databaseURL.redactingPassword), functions: \(functionsDirectory), "
            + "jwt_secret: \(jwtSecret == nil ? "unset" : "set"), jwt_public_key: \(jwtPublicKeyPath ?? "unset"), "
            + "gateway_signing_key: \(gatewaySigningKey == nil ? "unset" : "set"), gateway_public_key: \(gatewayPublicKey == nil ? "unset" : "set"), "
            + "jwt_jwks_url: \(jwtJWKSURL == nil ? "unset" : "set"), jwt_discovery: \(jwtDiscoveryURL == nil ? jwtDiscovery ?? "off" : "set"), "
            + "pseudonym_key: \(pseudonymKey == nil ? "unset" : "set"), upstreams: \(upstreams.keys.sorted()), "
            + "webhook: \(webhookURL == nil ? "unset" : "set"), webhook_secret: \(webhookSecret == nil ? "unset" : "set"), "
            + "slack: \(slackWebhookURL == nil ? "unset" : "set"), smtp: \(smtpURL == nil ? "unset" : "set"), email_to: \(emailTo.count))"
    }
}

extension RuntimeConfiguration {
    /// The folder `name` beside `directory` (`./functions` → `./datasets`).
    static func sibling(of directory: String, named name: String) -> String {
        var path = directory
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        guard let slash = path.lastIndex(of: "/") else { return name }
        return String(path[...slash]) + name
    }
}

extension String {
    /// A URL with any password replaced by `***`.
    var redactingPassword: String {
        guard let scheme = range(of: "://"), let at = self[scheme.upperBound...].firstIndex(of: "@"),
              let colon = self[scheme.upperBound..<at].firstIndex(of: ":") else { return self }
        return String(self[..<self.index(after: colon)]) + "***" + String(self[at...])
    }
}


/// How log records are written.
public enum LogFormat: String, Sendable {
    /// One JSON object per line (``JSONLogHandler``), for collectors.
    case json
    /// swift-log's human-readable lines.
    case text
}
