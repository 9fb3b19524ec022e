import Sluice

/// Fails every chunk, for exercising retries and the dead-letter stream in tests and drills:
/// `environment.FAIL_KIND` is `retryable` (default) or `permanent`.
public struct FailFunction: EventFunction {
    let kind: FunctionError.Kind

    public init(setup: PipelineSetup) throws {
        let text = setup.manifest.environment["FAIL_KIND"] ?? "retryable"
        guard let kind = FunctionError.Kind(rawValue: text) else {
            throw ManifestError(.badValue, file: setup.manifest.file, key: "environment.FAIL_KIND",
                                message: "must be 'retryable' or 'permanent'")
        }
        self.kind = kind
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        throw FunctionError(kind, code: "injected_failure", message: "this function fails on purpose (attempt \(context.attempt))")
    }
}
