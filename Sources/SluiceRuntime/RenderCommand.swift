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

    func validate() throws {
        guard !image.isEmpty, !image.contains(where: { $0.isWhitespace }) else {
            throw ValidationError("--image must be an image reference without spaces")
        }
    }

    func run() throws {
        let configuration = Environment.configuration()
        let manifests = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).loadAll()
        guard !manifests.isEmpty else {
            throw CommandFailure("no function manifests under \(configuration.functionsDirectory)")
        }
        let renderer = DeploymentRenderer(manifests: manifests, image: image)
        print(target == .k8s ? renderer.kubernetes() : renderer.compose(), terminator: "")
    }
}
