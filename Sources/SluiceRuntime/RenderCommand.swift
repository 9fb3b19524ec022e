import ArgumentParser
import Sluice
import SluiceDeploy

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Print deployment manifests generated from the functions directory.",
        discussion: """
            k8s: a Deployment, PodDisruptionBudget and, for HTTP functions, a Service and a
            HorizontalPodAutoscaler, for stream functions a KEDA ScaledObject (redis-streams), per
            function; the ConfigMap, the migration Job and the Prometheus scrape configuration.
            compose: Redis, PostgreSQL, the migration and one service per function.
            """)

    enum Target: String, ExpressibleByArgument, CaseIterable {
        case k8s
        case compose
    }

    @Argument(help: "What to render: k8s or compose.")
    var target: Target

    @Option(help: "The image every container runs.")
    var image: String = DeploymentRenderer.defaultImage

    @Option(name: .customLong("redis-selector"), help: "k8s: the labels of Redis' pods, key=value[,key=value] (default app.kubernetes.io/name=redis).")
    var redisSelector: String?

    @Option(name: .customLong("postgres-selector"), help: "k8s: the labels of PostgreSQL's pods (default app.kubernetes.io/name=postgresql).")
    var postgresSelector: String?

    @Option(name: .customLong("datastores-namespace"), help: "k8s: the namespace of the data stores' pods (default: Sluice's own).")
    var datastoresNamespace: String?

    @Option(name: .customLong("redis-cidr"), help: "k8s: Redis' addresses instead of pods (repeatable), e.g. 10.0.3.7/32.")
    var redisCIDRs: [String] = []

    @Option(name: .customLong("postgres-cidr"), help: "k8s: PostgreSQL's addresses instead of pods (repeatable).")
    var postgresCIDRs: [String] = []

    func validate() throws {
        guard !image.isEmpty, !image.contains(where: { $0.isWhitespace }) else {
            throw ValidationError("--image must be an image reference without spaces")
        }
        _ = try datastores()
    }

    /// The data stores the NetworkPolicies let the pods reach.
    func datastores() throws -> DatastorePeers {
        func peer(selector: String?, cidrs: [String], defaults: [String: String], option: String) throws -> DatastorePeers.Peer {
            do {
                if !cidrs.isEmpty {
                    guard selector == nil else { throw ValidationError("--\(option)-selector and --\(option)-cidr exclude each other") }
                    return .addresses(try cidrs.map { try DatastorePeers.cidr($0) })
                }
                return .pods(labels: try selector.map { try DatastorePeers.labels($0) } ?? defaults, namespace: datastoresNamespace)
            } catch let error as DatastorePeers.InvalidPeer {
                throw ValidationError("--\(option): \(error.message)")
            }
        }
        return DatastorePeers(
            redis: try peer(selector: redisSelector, cidrs: redisCIDRs, defaults: DatastorePeers.defaultRedisLabels, option: "redis"),
            postgres: try peer(selector: postgresSelector, cidrs: postgresCIDRs, defaults: DatastorePeers.defaultPostgresLabels, option: "postgres"))
    }

    func run() throws {
        let configuration = Environment.configuration()
        let manifests = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).loadAll()
        guard !manifests.isEmpty else {
            throw CommandFailure("no function manifests under \(configuration.functionsDirectory)")
        }
        var renderer = DeploymentRenderer(manifests: manifests, image: image)
        renderer.datastores = try datastores()
        print(target == .k8s ? renderer.kubernetes() : renderer.compose(), terminator: "")
    }
}
