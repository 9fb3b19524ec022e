import Foundation

/// Where a Redis server is: parsed from `redis://[:password@]host[:port][/db]`.
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    /// The password, if any. Never printed.
    public var password: String?

    public init(host: String = "127.0.0.1", port: Int = 6379, database: Int = 0, password: String? = nil) {
        self.host = host
        self.port = port
        self.database = database
        self.password = password
    }

    /// Parses a `redis://` URL.
    /// - Throws: ``RedisError`` with code `redis_bad_url`.
    public init(url: String) throws(RedisError) {
        guard let components = URLComponents(string: url), components.scheme == "redis",
              let host = components.host, !host.isEmpty
        else { throw RedisError(.badURL, "expected redis://host:port/db") }
        self.host = host
        self.port = components.port ?? 6379
        let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if path.isEmpty {
            self.database = 0
        } else if let db = Int(path), db >= 0 {
            self.database = db
        } else {
            throw RedisError(.badURL, "the database in the path must be a number")
        }
        self.password = components.password
    }

    /// `redis://host:port/db`, without the password.
    public var description: String { "redis://\(host):\(port)/\(database)" }
}
