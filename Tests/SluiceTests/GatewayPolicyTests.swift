import Sluice
import SluiceHTTP
import SluiceFunctions
import Testing

@Suite("Gateway policy")
struct GatewayPolicyTests {
    func policy(_ config: JSONValue) throws -> GatewayPolicy {
        try GatewayPolicy(manifest: Manifest(name: "gateway", handler: "gateway", triggers: [.http], config: config, file: "gateway.yaml"))
    }

    func error(_ config: JSONValue) -> ManifestError? {
        do {
            _ = try policy(config)
            return nil
        } catch {
            return error as? ManifestError
        }
    }

    static let routes: JSONValue = [
        ["method": "POST", "path": "/api/v1/ingest", "function": "ingest", "roles": ["ingest"]],
        ["method": "GET", "path": "/api/v1/jobs/{id}", "function": "ingest", "roles": ["ingest", "analyst"]],
        ["method": "DELETE", "path": "/api/v1/jobs/{id}", "function": "ingest", "roles": ["admin"]],
        ["method": "GET", "path": "/api/v1/jobs", "function": "ingest", "roles": ["ingest", "admin"]],
        ["method": "GET", "path": "/api/v1/openapi.json", "function": "gateway", "public": true],
    ]

    @Test func datasetsMayBeRestrictedToRoles() throws {
        let policy = try policy(["routes": Self.routes, "datasets": ["orders": ["sales", "finance"]]])
        #expect(policy.datasetRoles(forPath: "/api/v1/datasets/orders/records")?.roles == ["sales", "finance"])
        #expect(policy.datasetRoles(forPath: "/api/v1/datasets/orders")?.dataset == "orders")
        #expect(policy.datasetRoles(forPath: "/api/v1/datasets/readings/records") == nil)
        #expect(policy.datasetRoles(forPath: "/api/v1/datasets") == nil)
        #expect(policy.datasetRoles(forPath: "/api/v1/jobs/orders") == nil)
        // The routes of events that name no dataset are restricted with it (issue 31, finding 8).
        let events = try self.policy(["routes": Self.routes, "datasets": ["events": ["product"]]])
        for path in ["/api/v1/ingest", "/api/v1/data", "/api/v1/data/e-1", "/api/v1/analytics/summary", "/api/v1/process/transform",
                     "/api/v1/datasets/events", "/api/v1/datasets/events/records"] {
            #expect(events.datasetRoles(forPath: path)?.dataset == "events", "\(path)")
            #expect(events.datasetRoles(forPath: path)?.roles == ["product"], "\(path)")
        }
        for path in ["/api/v1/jobs", "/api/v1/jobs/j-1", "/api/v1/datasets", "/api/v1/ingestx", "/api/v1/audit"] {
            #expect(events.datasetRoles(forPath: path) == nil, "\(path)")
        }
        #expect(error(["routes": Self.routes, "datasets": ["Orders": ["sales"]]])?.key == "config.datasets.Orders")
        #expect(error(["routes": Self.routes, "datasets": ["orders": []]])?.key == "config.datasets.orders")
        #expect(error(["routes": Self.routes, "datasets": ["orders": "sales"]])?.key == "config.datasets.orders")
        #expect(error(["routes": Self.routes, "datasets": ["x", "y"]])?.key == "config.datasets")
    }

    @Test func routesMatchByMethodAndSegments() throws {
        let policy = try policy(["routes": Self.routes])
        guard case .route(let job) = policy.match(method: "GET", path: "/api/v1/jobs/abc") else {
            Issue.record("GET /api/v1/jobs/abc did not match")
            return
        }
        #expect(job.path == "/api/v1/jobs/{id}")
        #expect(job.roles == ["ingest", "analyst"])
        #expect(job.function == "ingest")
        if case .route(let list) = policy.match(method: "GET", path: "/api/v1/jobs") { #expect(list.roles == ["ingest", "admin"]) } else {
            Issue.record("GET /api/v1/jobs did not match")
        }
        if case .route(let open) = policy.match(method: "GET", path: "/api/v1/openapi.json") { #expect(open.isPublic) } else {
            Issue.record("the public route did not match")
        }
        #expect(policy.match(method: "PUT", path: "/api/v1/jobs/abc") == .methodNotAllowed(["GET", "DELETE"]))
        #expect(policy.match(method: "GET", path: "/api/v1/jobs/abc/more") == .notFound)
        #expect(policy.match(method: "GET", path: "/api/v1/jobs/") == .notFound)  // an empty id is no id
        #expect(policy.match(method: "GET", path: "/api/v1/job") == .notFound)
        #expect(policy.match(method: "POST", path: "/api/v1/ingest/") == .notFound)
    }

    @Test func theMostGenerousLimitOfTheCallersRolesApplies() throws {
        let policy = try policy([
            "routes": Self.routes,
            "rate_limits": ["ingest": ["per_second": 10, "burst": 20], "admin": ["per_second": 100, "burst": 5], "default": ["per_second": 1, "burst": 2]],
        ])
        #expect(policy.rateLimit(for: ["ingest"]) == .init(perSecond: 10, burst: 20))
        #expect(policy.rateLimit(for: ["ingest", "admin"]) == .init(perSecond: 100, burst: 5))
        #expect(policy.rateLimit(for: ["analyst"]) == .init(perSecond: 1, burst: 2))
        #expect(policy.rateLimit(for: []) == .init(perSecond: 1, burst: 2))
        #expect(try self.policy(["routes": Self.routes]).rateLimit(for: ["ingest"]) == nil)
    }

    @Test func badPoliciesAreRefusedNamingTheKey() {
        #expect(error([:])?.key == "config.routes")
        #expect(error(["routes": [["method": "FETCH", "path": "/api/v1/x", "function": "f", "roles": ["admin"]]]])?.key == "config.routes[0].method")
        #expect(error(["routes": [["method": "GET", "path": "/other", "function": "f", "roles": ["admin"]]]])?.key == "config.routes[0].path")
        #expect(error(["routes": [["method": "GET", "path": "/api/v1/x", "function": "f", "roles": ["root"]]]])?.message.contains("'root' is not a role") == true)
        #expect(error(["routes": [["method": "GET", "path": "/api/v1/x", "function": "f"]]])?.key == "config.routes[0].roles")
        #expect(error(["routes": [["method": "GET", "path": "/api/v1/x", "function": "f", "roles": ["admin"], "public": true]]])?.key == "config.routes[0].roles")
        #expect(error(["routes": [["method": "GET", "path": "/api/v1/x", "function": "f", "roles": ["admin"], "role": "x"]]])?.code == .unknownKey)
        #expect(error(["routes": [["method": "GET", "path": "/api/v1/x", "function": "f", "roles": ["admin"]],
                                  ["method": "get", "path": "/api/v1/x", "function": "g", "roles": ["ingest"]]]])?.key == "config.routes[1].path")
        #expect(error(["routes": Self.routes, "rate_limits": ["ingest": ["per_second": 0, "burst": 1]]])?.key == "config.rate_limits.ingest")
        #expect(error(["routes": Self.routes, "rate_limits": ["guest": ["per_second": 1, "burst": 1]]])?.key == "config.rate_limits.guest")
        #expect(error(["routes": Self.routes, "leeway": "soon"])?.key == "config.leeway")
    }

    @Test func theDocumentCoversEveryRouteAndRefusesAnUndescribedOne() throws {
        let root = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let manifest = try ManifestLoader(functionsDirectory: "/\(root)/functions").load("gateway")
        let policy = try GatewayPolicy(manifest: manifest)
        let document = try OpenAPIDocument.build(policy: policy, operations: BuiltinFunctions.allOperations)
        for route in policy.routes {
            let operation = document["paths"]?[route.path]?[route.method.lowercased()]
            #expect(operation?["operationId"]?.stringValue?.isEmpty == false, "\(route.method) \(route.path)")
            #expect(operation?["responses"]?["default"] != nil)
            if !route.isPublic { #expect(operation?["x-roles"] == .array(route.roles.sorted().map { .string($0) })) }
        }
        // Every $ref points at a schema the document defines.
        var refs: [String] = []
        func collect(_ value: JSONValue) {
            switch value {
            case .object(let object):
                for (key, member) in object { if key == "$ref", let ref = member.stringValue { refs.append(ref) } else { collect(member) } }
            case .array(let items): items.forEach(collect)
            default: break
            }
        }
        collect(document)
        #expect(!refs.isEmpty)
        for ref in refs {
            let name = String(ref.dropFirst("#/components/schemas/".count))
            #expect(document["components"]?["schemas"]?[name] != nil, "\(ref)")
        }

        var extra = policy
        extra.routes.append(.init(method: "GET", segments: ["api", "v1", "nothing"], function: "ingest", roles: ["admin"], isPublic: false))
        #expect(throws: OpenAPIDocument.MissingOperation.self) { try OpenAPIDocument.build(policy: extra, operations: BuiltinFunctions.allOperations) }
    }
}
