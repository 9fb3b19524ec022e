import Sluice

/// What the gateway's manifest declares: the routes it guards (who may call each and which
/// function answers it) and the rate limit of each role.
public struct GatewayPolicy: Sendable {
    public struct Route: Sendable, Equatable {
        public var method: String
        /// Path segments; `{name}` matches any one segment.
        public var segments: [String]
        /// The function that answers (`ingest`, …); `gateway` for the gateway's own routes.
        public var function: String
        /// Roles of which a caller needs one; empty with `isPublic`.
        public var roles: Set<String>
        /// Answered without a token.
        public var isPublic: Bool

        public var path: String { "/" + segments.joined(separator: "/") }

        public init(method: String, segments: [String], function: String, roles: Set<String>, isPublic: Bool) {
            self.method = method
            self.segments = segments
            self.function = function
            self.roles = roles
            self.isPublic = isPublic
        }

        func matches(_ pathSegments: [Substring]) -> Bool {
            guard pathSegments.count == segments.count else { return false }
            for (pattern, segment) in zip(segments, pathSegments) {
                if pattern.hasPrefix("{") && pattern.hasSuffix("}") {
                    if segment.isEmpty { return false }
                } else if pattern != segment {
                    return false
                }
            }
            return true
        }
    }

    public struct RateLimit: Sendable, Equatable {
        /// Tokens added per second.
        public var perSecond: Double
        /// The bucket's size: requests a caller may make at once.
        public var burst: Int

        public init(perSecond: Double, burst: Int) {
            self.perSecond = perSecond
            self.burst = burst
        }
    }

    /// What the policy says of a request.
    public enum Match: Sendable, Equatable {
        case route(Route)
        /// The path is known, the method is not: the methods that are.
        case methodNotAllowed([String])
        case notFound
    }

    public var routes: [Route]
    /// Per dataset, the roles of which a caller of a route naming it (`/api/v1/datasets/NAME…`)
    /// needs one, besides the route's (`admin` always may). A dataset not listed is open to
    /// the route's roles.
    public var datasetRoles: [String: Set<String>] = [:]
    /// Per role; a caller with several roles gets the most generous. `default` applies to a
    /// caller none of whose roles has a limit.
    public var rateLimits: [String: RateLimit]
    /// Clock skew allowed for `exp`, `nbf` and `iat`.
    public var leeway: Duration
    public var connectTimeout: Duration
    public var idleTimeout: Duration

    public static let knownRoles: Set<String> = ["ingest", "analyst", "admin"]

    /// Reads the gateway's `config`.
    public init(manifest: Manifest) throws {
        let file = manifest.file
        leeway = try manifest.configDuration("leeway", default: .seconds(30))
        connectTimeout = try manifest.configDuration("connect_timeout", default: .seconds(2))
        idleTimeout = try manifest.configDuration("idle_timeout", default: .seconds(60))

        guard case .array(let items)? = manifest.config["routes"], !items.isEmpty else {
            throw ManifestError(.missingField, file: file, key: "config.routes", message: "must list the routes the gateway guards")
        }
        var routes: [Route] = []
        for (index, item) in items.enumerated() {
            let at = "config.routes[\(index)]"
            guard case .object(let object) = item else {
                throw ManifestError(.badValue, file: file, key: at, message: "must be a mapping with method, path, function and roles")
            }
            for key in object.keys where !["method", "path", "function", "roles", "public"].contains(key) {
                throw ManifestError(.unknownKey, file: file, key: "\(at).\(key)", message: "is not a route key (method, path, function, roles, public)")
            }
            guard let method = object["method"]?.stringValue?.uppercased(),
                  ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(method) else {
                throw ManifestError(.badValue, file: file, key: "\(at).method", message: "must be GET, POST, PUT, DELETE or PATCH")
            }
            guard let path = object["path"]?.stringValue, path.hasPrefix("/api/v1/") else {
                throw ManifestError(.badValue, file: file, key: "\(at).path", message: "must be a path under /api/v1/")
            }
            guard let function = object["function"]?.stringValue, !function.isEmpty else {
                throw ManifestError(.missingField, file: file, key: "\(at).function", message: "names the function that answers the route")
            }
            let isPublic = object["public"]?.boolValue ?? false
            var roles: Set<String> = []
            if let list = object["roles"] {
                guard case .array(let values) = list, values.allSatisfy({ $0.stringValue != nil }) else {
                    throw ManifestError(.badValue, file: file, key: "\(at).roles", message: "must be a list of roles")
                }
                roles = Set(values.compactMap(\.stringValue))
                for role in roles where !Self.knownRoles.contains(role) {
                    throw ManifestError(.badValue, file: file, key: "\(at).roles", message: "'\(role)' is not a role (ingest, analyst, admin)")
                }
            }
            guard isPublic != !roles.isEmpty else {
                throw ManifestError(.badValue, file: file, key: "\(at).roles",
                                    message: isPublic ? "a public route takes no roles" : "must name at least one role (or mark the route public: true)")
            }
            let route = Route(method: method, segments: path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init),
                              function: function, roles: roles, isPublic: isPublic)
            if routes.contains(where: { $0.method == method && $0.segments == route.segments }) {
                throw ManifestError(.badValue, file: file, key: "\(at).path", message: "\(method) \(path) is declared twice")
            }
            routes.append(route)
        }
        self.routes = routes

        if let value = manifest.config["datasets"] {
            guard case .object(let object) = value else {
                throw ManifestError(.badValue, file: file, key: "config.datasets", message: "must map dataset names to lists of roles")
            }
            for (name, list) in object {
                let at = "config.datasets.\(DatasetSpec.quotedForMessage(name))"
                if let problem = DatasetSpec.problem(withName: name) {
                    throw ManifestError(.badValue, file: file, key: at, message: "the dataset name \(problem)")
                }
                guard case .array(let values) = list, !values.isEmpty,
                      let roles = Optional(values.compactMap(\.stringValue)), roles.count == values.count,
                      roles.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 64 && !$0.contains(",") })
                else {
                    throw ManifestError(.badValue, file: file, key: at, message: "must be a non-empty list of roles")
                }
                datasetRoles[name] = Set(roles)
            }
        }

        var limits: [String: RateLimit] = [:]
        if let value = manifest.config["rate_limits"] {
            guard case .object(let object) = value else {
                throw ManifestError(.badValue, file: file, key: "config.rate_limits", message: "must map roles to {per_second, burst}")
            }
            for (role, limit) in object {
                let at = "config.rate_limits.\(role)"
                guard role == "default" || Self.knownRoles.contains(role) else {
                    throw ManifestError(.badValue, file: file, key: at, message: "'\(role)' is not a role (ingest, analyst, admin, default)")
                }
                guard let perSecond = limit["per_second"]?.doubleValue, perSecond > 0,
                      let burst = limit["burst"]?.intValue, burst >= 1 else {
                    throw ManifestError(.badValue, file: file, key: at, message: "must be {per_second: > 0, burst: >= 1}")
                }
                limits[role] = RateLimit(perSecond: perSecond, burst: Int(burst))
            }
        }
        rateLimits = limits
    }

    /// The route a request names.
    public func match(method: String, path: String) -> Match {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { $0 }
        var methods: [String] = []
        for route in routes where route.matches(segments) {
            if route.method == method { return .route(route) }
            methods.append(route.method)
        }
        return methods.isEmpty ? .notFound : .methodNotAllowed(methods)
    }

    /// The limit for a caller holding `roles`: the most generous of theirs, else `default`.
    /// The roles a caller of `path` needs one of for the dataset it names, if the path names one
    /// the configuration restricts (`admin` is never refused).
    /// The routes of the `events` dataset that name no dataset (uploads, one event, the summary)
    /// are its too: a restriction follows the dataset, whichever path reaches it.
    public func datasetRoles(forPath path: String) -> (dataset: String, roles: Set<String>)? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count >= 4, segments[1] == "api", segments[2] == "v1" else { return nil }
        let name: String
        switch segments[3] {
        case "datasets" where segments.count >= 5:
            name = String(segments[4])
        case "ingest" where segments.count == 4, "data", "analytics", "process":
            name = DatasetReference.events
        default:
            return nil
        }
        return datasetRoles[name].map { (name, $0) }
    }

    public func rateLimit(for roles: Set<String>) -> RateLimit? {
        let own = roles.compactMap { rateLimits[$0] }
        return own.max { ($0.perSecond, $0.burst) < ($1.perSecond, $1.burst) } ?? rateLimits["default"]
    }
}
