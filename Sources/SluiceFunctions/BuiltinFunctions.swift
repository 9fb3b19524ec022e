import Sluice

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
        registry.register("transform") { try TransformFunction(manifest: $0.manifest, plugins: $0.dependencies.transformPlugins) }
        registry.register("load") { try LoadFunction(setup: $0) }
        registry.register("ingest", operations: IngestFunction.operations) { try await IngestFunction(setup: $0) }
        registry.register("quarantine") { try QuarantineFunction(setup: $0) }
        registry.register("job-recorder") { try JobRecorderFunction(setup: $0) }
        registry.register("warehouse", operations: WarehouseFunction.operations) { try WarehouseFunction(setup: $0) }
        registry.register("calls", operations: CallsFunction.operations) { try CallsFunction(setup: $0) }
        registry.register("notify") { try NotifyFunction(setup: $0) }
        registry.register("privacy", operations: PrivacyFunction.operations) { try PrivacyFunction(setup: $0) }
        registry.registerMiddleware("consent") { try ConsentMiddleware(setup: $0) }
        registry.registerMiddleware("geo-restrict") { try GeoRestrictMiddleware(manifest: $0.manifest) }
        registry.register("gateway", operations: [OpenAPIDocument.operation]) { try GatewayFunction(setup: $0) }
        return registry
    }
}
