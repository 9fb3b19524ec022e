import Sluice
import Synchronization

/// Routes each chunk along its dataset's `chain`: the events a function forwards go to the input
/// stream of the next function in the chain, so a dataset may leave out a built-in step or put a
/// function of its own (or a user's) in its place. The input stream of a function is its
/// manifest's stream trigger, read from the functions folder on first use.
public final class DatasetRouter: ChunkRouting {
    let datasets: DatasetStore
    let manifests: ManifestLoader
    private let streams = Mutex<[String: String]>([:])

    public init(datasets: DatasetStore, manifests: ManifestLoader) {
        self.datasets = datasets
        self.manifests = manifests
    }

    public func outputs(after function: String, for chunk: Chunk) async throws(FunctionError) -> [String]? {
        guard let chain = try await chain(of: chunk.dataset), let index = chain.firstIndex(of: function), index + 1 < chain.count else { return nil }
        return [try stream(of: chain[index + 1], dataset: chunk.datasetName)]
    }

    /// The streams the records of `dataset` (nil: events) enter the pipeline by: the input
    /// stream of its chain's first function.
    public func entry(for dataset: DatasetReference?) async throws(FunctionError) -> [String]? {
        guard let first = try await chain(of: dataset)?.first else { return nil }
        return [try stream(of: first, dataset: dataset?.name ?? DatasetReference.events)]
    }

    /// The chain of `dataset` (nil: events), at least at the version it names; nil when the
    /// catalog has no such dataset (the stage that reads it says so).
    func chain(of dataset: DatasetReference?) async throws(FunctionError) -> [String]? {
        do {
            return try await datasets.spec(dataset?.name ?? DatasetReference.events, atLeast: dataset?.version)?.spec.chain
        } catch {
            throw .retryable("catalog_unavailable", "the dataset catalog cannot be read now")
        }
    }

    /// The input stream of function `name`.
    /// - Throws: `unknown_function` (permanent) when no manifest in the functions folder names
    ///   it, or its manifest has no stream trigger.
    func stream(of name: String, dataset: String) throws(FunctionError) -> String {
        if let known = streams.withLock({ $0[name] }) { return known }
        guard let manifest = try? manifests.load(name), let stream = manifest.inputStream else {
            throw .permanent("unknown_function", "dataset \(dataset)'s chain names '\(name)', which no manifest in the functions folder consumes from a stream")
        }
        streams.withLock { $0[name] = stream }
        return stream
    }

    /// Checks that every function `spec`'s chain names has a manifest with a stream trigger.
    /// - Throws: `dataset_invalid` naming the chain's entry.
    public func check(_ spec: DatasetSpec) throws(DatasetError) {
        for (index, name) in spec.chain.enumerated() {
            do {
                _ = try stream(of: name, dataset: spec.name)
            } catch {
                throw DatasetError(.invalid, key: "chain[\(index)]",
                                   "no function '\(name)' with a stream trigger in the functions folder")
            }
        }
    }
}
