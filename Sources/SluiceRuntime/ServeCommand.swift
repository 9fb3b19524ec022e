import ArgumentParser
import Sluice

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one function from functions/NAME/function.yaml.")

    @Argument(help: "The function's name (its folder under the functions directory).")
    var name: String

    @Option(help: "The HTTP port (health, metrics, /invoke and the function's routes).")
    var port: Int = 8080

    @Option(help: "The address to listen on.")
    var host: String = "0.0.0.0"

    func run() async throws {
        let configuration = Environment.configuration()
        let logger = Environment.bootstrapLogging(configuration)
        let manifest = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).load(name)
        let host = FunctionHost(configuration: configuration, logger: logger)
        try await host.run(manifests: [manifest], host: self.host, port: port)
    }
}
