import Logging

/// Process-wide settings read once from the environment at the edge (the CLI).
public struct RuntimeConfiguration: Sendable, Equatable {
    /// `SLUICE_REDIS_URL`, default `redis://127.0.0.1:6379/0`.
    public var redisURL: String
    /// `SLUICE_DATABASE_URL`, default `postgres://sluice@127.0.0.1:5432/sluice`.
    public var databaseURL: String
    /// `SLUICE_FUNCTIONS_DIR`, default `./functions`.
    public var functionsDirectory: String
    /// `SLUICE_LOG_LEVEL`, default `info`.
    public var logLevel: Logger.Level
    /// The hash tag every Redis key of the pipeline shares, so that the forward-and-ack
    /// script touches one Redis Cluster slot. Default `sluice`.
    public var hashTag: String

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
        if let v = environment["SLUICE_LOG_LEVEL"], let level = Logger.Level(rawValue: v.lowercased()) { logLevel = level }
    }
}
