import Sluice
import SluiceHTTP
import SluicePrivacy
import Synchronization

/// The handlers and middleware built into the `sluice` binary.
public enum BuiltinFunctions {
    /// A registry holding every built-in handler.
    public static func registry() -> PipelineRegistry {
        var registry = PipelineRegistry()
        registry.register("intake") { try IntakeFunction(setup: $0) }
        registry.register("stamp") { try StampFunction(setup: $0) }
        registry.register("filter") { _ in FilterFunction() }
        registry.register("sink") { setup in
            let sink = try SinkFunction(setup: setup)
            try await sink.createTables()
            return sink
        }
        registry.register("fail") { try FailFunction(setup: $0) }
        registry.register("validate") { try ValidateFunction(setup: $0) }
        registry.register("enrich") { try EnrichFunction(setup: $0) }
        registry.register("transform") { try TransformFunction(setup: $0) }
        registry.register("load") { try LoadFunction(setup: $0) }
        registry.register("ingest") { try await IngestFunction(setup: $0) }
        registry.register("quarantine") { try QuarantineFunction(setup: $0) }
        registry.register("job-recorder") { try JobRecorderFunction(setup: $0) }
        registry.register("warehouse") { try WarehouseFunction(setup: $0) }
        registry.register("calls") { try CallsFunction(setup: $0) }
        registry.register("notify") { try NotifyFunction(setup: $0) }
        registry.register("privacy") { try PrivacyFunction(setup: $0) }
        // Every function with a manifest `runtime`: a process of its own, in any language.
        registry.register(FunctionRuntime.handler) { try ProcessFunction(setup: $0) }
        registry.registerMiddleware("pii-mask") { setup in
            var middleware = try PIIMaskMiddleware(manifest: setup.manifest, pseudonymKey: setup.configuration.pseudonymKey)
            // The plan is made once per dataset version, not per chunk (a wide spec's is not free).
            let plans = PerDataset<DatasetMasking>(datasets: setup.dependencies.datasets) { spec, _ in spec.masking }
            middleware.chunkMasking = { chunk in
                do {
                    return try await plans.plan(for: chunk)
                } catch let error as FunctionError where error.code == "unknown_dataset" {
                    // A dataset no longer in the catalog: its records are still masked by the scan.
                    return .none
                }
            }
            return middleware
        }
        registry.registerMiddleware("consent") { try ConsentMiddleware(setup: $0) }
        registry.registerMiddleware("geo-restrict") { try GeoRestrictMiddleware(manifest: $0.manifest) }
        registry.register("gateway") { try GatewayFunction(setup: $0) }
        for registration in added.withLock({ $0 }) { registration(&registry) }
        return registry
    }

    /// The functions a package of its own adds to the built-in ones (``add(_:)``).
    private static let added = Mutex<[@Sendable (inout PipelineRegistry) -> Void]>([])

    /// Adds handlers (or middleware) to every registry ``registry()`` makes from now on: the
    /// functions of a binary of one's own, registered once as it starts (SluiceRuntime's
    /// `SluiceApplication`).
    public static func add(_ registration: @escaping @Sendable (inout PipelineRegistry) -> Void) {
        added.withLock { $0.append(registration) }
    }

    /// The public API routes each handler answers, by handler name: the gateway's OpenAPI
    /// document is written from them, and the audit middleware reads them.
    public static let operations: [String: [APIOperation]] = [
        "ingest": IngestFunction.operations, "warehouse": WarehouseFunction.operations, "calls": CallsFunction.operations,
        "privacy": PrivacyFunction.operations, "gateway": [OpenAPIDocument.operation],
    ]

    /// Every described API route, ordered by path and method.
    public static var allOperations: [APIOperation] {
        operations.values.joined().sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }
}
