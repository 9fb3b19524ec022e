import Sluice
import Synchronization

extension DatasetSpec {
    /// Function `function`'s settings for this dataset: its manifest's `config`, with each key
    /// the dataset's `steps.FUNCTION` declares put in its place.
    func settings(for function: String, base: JSONValue) -> JSONValue {
        guard case .object(let overrides)? = steps[function] else { return base }
        var merged = base.objectValue ?? JSONObject()
        for (key, value) in overrides { merged[key] = value }
        return .object(merged)
    }
}

/// What a stage builds once per dataset version (its compiled rules, say) and reuses for every
/// chunk of that version.
final class PerDataset<Plan: Sendable>: Sendable {
    private let plans = Mutex<[String: (version: Int, plan: Plan)]>([:])
    let datasets: DatasetStore
    let make: @Sendable (DatasetSpec, Int) throws -> Plan

    /// - Parameter make: the plan of a spec at a version.
    init(datasets: DatasetStore, make: @escaping @Sendable (DatasetSpec, Int) throws -> Plan) {
        self.datasets = datasets
        self.make = make
    }

    /// The plan for the chunk's dataset, at least at the version the chunk names.
    /// - Throws: `unknown_dataset` (permanent) when the catalog has no such dataset,
    ///   `dataset_settings_invalid` (permanent) when its settings for this stage are not usable.
    func plan(for chunk: Chunk) async throws -> Plan {
        guard let stored = try await datasets.spec(chunk.datasetName, atLeast: chunk.dataset?.version) else {
            throw FunctionError.permanent("unknown_dataset", "the chunk's dataset is not in the catalog")
        }
        if let cached = plans.withLock({ $0[stored.spec.name] }), cached.version == stored.version { return cached.plan }
        let plan: Plan
        do {
            plan = try make(stored.spec, stored.version)
        } catch let error as ManifestError {
            throw FunctionError.permanent("dataset_settings_invalid", "dataset \(stored.spec.name): \(error.key): \(error.message)")
        }
        plans.withLock { $0[stored.spec.name] = (stored.version, plan) }
        return plan
    }
}
