import Logging

/// A function handler of any kind: event functions here, HTTP functions in `SluiceHTTP`.
public protocol FunctionHandler: Sendable {}


/// What a handler factory gets to build its handler: the function's manifest, a logger, the
/// process's configuration, the typed `Dependencies` of the process (the adapters' clients,
/// which the core does not know), and the registry, for functions that build others.
public struct FunctionSetup<Dependencies: Sendable>: Sendable {
    /// The function's manifest.
    public var manifest: Manifest
    /// A logger tagged with the function's name.
    public var logger: Logger
    /// The process's configuration (keys, allowed hosts, secrets).
    public var configuration: RuntimeConfiguration
    /// The clients and services of the process.
    public var dependencies: Dependencies
    /// The registry the handler is built from.
    public var registry: FunctionRegistry<Dependencies>

    /// Creates a setup.
    public init(manifest: Manifest, logger: Logger, configuration: RuntimeConfiguration = RuntimeConfiguration(),
                dependencies: Dependencies, registry: FunctionRegistry<Dependencies>) {
        self.manifest = manifest
        self.logger = logger
        self.configuration = configuration
        self.dependencies = dependencies
        self.registry = registry
    }

    /// This setup for another function's manifest (a stage another function builds).
    public func with(manifest: Manifest) -> FunctionSetup {
        var setup = self
        setup.manifest = manifest
        setup.logger[metadataKey: "function"] = .string(manifest.name)
        return setup
    }
}

/// The dependencies of functions that need none beyond their setup (the core's own tests).
public struct NoDependencies: Sendable {
    public init() {}
}

/// Maps the `handler` names used in manifests to the code that builds them, and middleware
/// names to middleware.
public struct FunctionRegistry<Dependencies: Sendable>: Sendable {
    /// Builds a handler for a manifest.
    public typealias Factory = @Sendable (FunctionSetup<Dependencies>) async throws -> any FunctionHandler
    /// Builds a middleware for a manifest.
    public typealias MiddlewareFactory = @Sendable (FunctionSetup<Dependencies>) throws -> any Middleware

    private var factories: [String: Factory] = [:]
    private var middlewareFactories: [String: MiddlewareFactory] = [:]

    /// A registry holding only the core middleware (`deadline`).
    public init() {
        registerMiddleware("deadline") { _ in DeadlineMiddleware() }
    }

    /// Registers (or replaces) the handler named `name`.
    public mutating func register(_ name: String, factory: @escaping Factory) {
        factories[name] = factory
    }

    /// Registers (or replaces) the middleware named `name`.
    public mutating func registerMiddleware(_ name: String, factory: @escaping MiddlewareFactory) {
        middlewareFactories[name] = factory
    }

    /// The registered handler names, sorted.
    public var handlerNames: [String] { factories.keys.sorted() }

    /// Whether a middleware of that name exists.
    public func hasMiddleware(_ name: String) -> Bool { middlewareFactories[name] != nil }

    /// Builds the handler for `setup.manifest`, wrapping event functions in their middleware.
    /// - Throws: ``ManifestError`` when the handler or a middleware name is unknown, or what
    ///   the factory throws.
    public func makeHandler(_ setup: FunctionSetup<Dependencies>) async throws -> any FunctionHandler {
        let manifest = setup.manifest
        guard let factory = factories[manifest.handler] else {
            throw ManifestError(
                .badValue, file: manifest.file, key: "handler",
                message: "unknown handler '\(manifest.handler)' (known: \(handlerNames.joined(separator: ", ")))")
        }
        let handler = try await factory(setup)
        let middleware = try manifest.middleware.map { name -> any Middleware in
            guard let make = middlewareFactories[name] else {
                throw ManifestError(.badValue, file: manifest.file, key: "middleware",
                                    message: "unknown middleware '\(name)'")
            }
            return try make(setup)
        }
        if let function = handler as? any EventFunction, !middleware.isEmpty {
            return MiddlewareChain.wrap(function, in: middleware)
        }
        return handler
    }
}

extension FunctionRegistry {
    /// The invoker of event function `name`, built from its manifest in `loader`'s folder with
    /// `setup`'s configuration and dependencies; `nil` when no manifest has that name or it is
    /// an HTTP function (those are never built here).
    /// - Throws: what building the handler throws (a manifest or setup error).
    public func makeInvoker(named name: String, loader: ManifestLoader, setup: FunctionSetup<Dependencies>) async throws -> FunctionInvoker? {
        guard let manifest = try? loader.load(name), !manifest.servesHTTP else { return nil }
        let stage = setup.with(manifest: manifest)
        let handler = try await makeHandler(stage)
        guard let function = handler as? any EventFunction else { return nil }
        return FunctionInvoker(manifest: manifest, function: function, logger: stage.logger)
    }
}
