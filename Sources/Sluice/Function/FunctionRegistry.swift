import Logging

/// A function handler of any kind: event functions here, HTTP functions in `SluiceHTTP`.
public protocol FunctionHandler: Sendable {}


/// Shared resources (connection pools, clients) a handler factory can ask for by type.
///
/// The CLI puts the adapters' clients here, so the core need not know them.
public struct Resources: Sendable {
    private var storage: [ObjectIdentifier: any Sendable] = [:]

    /// An empty set of resources.
    public init() {}

    /// Adds or replaces the resource of type `T`.
    public mutating func set<T: Sendable>(_ value: T) {
        storage[ObjectIdentifier(T.self)] = value
    }

    /// The resource of type `T`, if one was set.
    public func get<T: Sendable>(_ type: T.Type = T.self) -> T? {
        storage[ObjectIdentifier(T.self)] as? T
    }

    /// The resource of type `T`.
    /// - Throws: ``FunctionError`` (permanent, `missing_resource`) when none was set.
    public func require<T: Sendable>(_ type: T.Type = T.self) throws -> T {
        guard let value = get(type) else {
            throw FunctionError.permanent("missing_resource", "no \(T.self) is configured in this process")
        }
        return value
    }
}

/// What a handler factory gets to build its handler.
public struct FunctionSetup: Sendable {
    /// The function's manifest.
    public var manifest: Manifest
    /// A logger tagged with the function's name.
    public var logger: Logger
    /// Shared clients and pools.
    public var resources: Resources

    /// Creates a setup.
    public init(manifest: Manifest, logger: Logger, resources: Resources) {
        self.manifest = manifest
        self.logger = logger
        self.resources = resources
    }
}

/// Maps the `handler` names used in manifests to the code that builds them, and middleware
/// names to middleware.
public struct FunctionRegistry: Sendable {
    /// Builds a handler for a manifest.
    public typealias Factory = @Sendable (FunctionSetup) async throws -> any FunctionHandler
    /// Builds a middleware for a manifest.
    public typealias MiddlewareFactory = @Sendable (FunctionSetup) throws -> any Middleware

    private var factories: [String: Factory] = [:]
    private var middlewareFactories: [String: MiddlewareFactory] = [:]
    private var described: [String: [APIOperation]] = [:]

    /// A registry holding only the core middleware (`deadline`, `pii-mask`).
    public init() {
        registerMiddleware("deadline") { _ in DeadlineMiddleware() }
        registerMiddleware("pii-mask") { setup in
            try PIIMaskMiddleware(manifest: setup.manifest, pseudonymKey: setup.resources.get(RuntimeConfiguration.self)?.pseudonymKey)
        }
    }

    /// Registers (or replaces) the handler named `name`.
    public mutating func register(_ name: String, factory: @escaping Factory) {
        factories[name] = factory
    }

    /// Registers the public API routes the handler named `name` answers (the gateway's OpenAPI
    /// document is written from them).
    public mutating func register(_ name: String, operations: [APIOperation], factory: @escaping Factory) {
        factories[name] = factory
        described[name] = operations
    }

    /// The API routes the handler `name` describes.
    public func operations(of name: String) -> [APIOperation] { described[name] ?? [] }

    /// Every described API route, ordered by path and method.
    public var operations: [APIOperation] {
        described.values.joined().sorted { ($0.path, $0.method) < ($1.path, $1.method) }
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
    public func makeHandler(_ setup: FunctionSetup) async throws -> any FunctionHandler {
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
    /// a logger tagged with its name; `nil` when no manifest has that name or it is an HTTP
    /// function (those are never built here).
    /// - Throws: what building the handler throws (a manifest or setup error).
    public func makeInvoker(named name: String, loader: ManifestLoader, resources: Resources, logger: Logger) async throws -> FunctionInvoker? {
        guard let manifest = try? loader.load(name), !manifest.servesHTTP else { return nil }
        var functionLogger = logger
        functionLogger[metadataKey: "function"] = .string(name)
        let handler = try await makeHandler(FunctionSetup(manifest: manifest, logger: functionLogger, resources: resources))
        guard let function = handler as? any EventFunction else { return nil }
        return FunctionInvoker(manifest: manifest, function: function, logger: functionLogger)
    }
}
