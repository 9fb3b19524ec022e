import ArgumentParser
import Foundation
import Logging
import Sluice

/// The `sluice` command line: `serve`, `dev`, `invoke`, `dlq`, `render` and the rest. The
/// `sluice` binary runs it as it is; a package of your own runs it with its functions added
/// (``SluiceApplication``).
struct SluiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A function runtime for data pipelines.",
        subcommands: [ServeCommand.self, DevCommand.self, NewCommand.self, ProcessCommand.self, MigrateCommand.self, InvokeCommand.self, DLQCommand.self, TokenCommand.self, KeysCommand.self, AssertCommand.self,
                      RenderCommand.self, HealthCommand.self]
    )

    /// Every command, servers and one-shot tools alike: a peer that closes its end must fail
    /// one write, not kill the process (hiredis writes with plain write(2), which raises SIGPIPE).
    static func main(arguments: [String]?) async {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Reads the environment once, at the edge, and sets up logging.
enum Environment {
    static func configuration() -> RuntimeConfiguration {
        RuntimeConfiguration(environment: ProcessInfo.processInfo.environment)
    }

    static func bootstrapLogging(_ configuration: RuntimeConfiguration) -> Logger {
        let level = configuration.logLevel
        switch configuration.logFormat {
        case .json:
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        return Logger(label: "sluice")
    }
}

/// A failure the CLI reports with its message and a non-zero exit, without a stack of types.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
