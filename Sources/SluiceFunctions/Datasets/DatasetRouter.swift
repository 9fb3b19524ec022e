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

    /// Checks that `spec`'s chain is a pipeline: every function it names has a manifest here
    /// that takes a stream and declares it may be a dataset's step (``Manifest/isDatasetStep``:
    /// never jobs, notify or quarantine), and the first masks personal data (declares
    /// `pii-mask`) unless the dataset's file says `unmasked: true`. (No stage twice and `load`
    /// last are the spec's own rules, ``DatasetSpec/validate()``.)
    /// - Parameter fromFile: whether the spec comes from a dataset file: only a file may set
    ///   `unmasked` or name a table.
    /// - Throws: `dataset_invalid` naming the chain's entry (or `unmasked`, `table`).
    public func check(_ spec: DatasetSpec, fromFile: Bool = false) throws(DatasetError) {
        if !fromFile {
            if spec.unmasked {
                throw DatasetError(.invalid, key: "unmasked", "only a dataset file may let a chain start without masking personal data")
            }
            if spec.table != DatasetSpec.TableName(schema: DatasetSpec.defaultSchema, name: spec.name) {
                throw DatasetError(.invalid, key: "table", "a dataset declared through the API loads into \(DatasetSpec.defaultSchema).\(spec.name); only a dataset file may name a table")
            }
        }
        for (index, name) in spec.chain.enumerated() {
            do {
                _ = try stream(of: name, dataset: spec.name)
            } catch {
                throw DatasetError(.invalid, key: "chain[\(index)]",
                                   "no function '\(name)' with a stream trigger in the functions folder")
            }
            guard let manifest = try? manifests.load(name), manifest.isDatasetStep else {
                throw DatasetError(.invalid, key: "chain[\(index)]",
                                   "'\(name)' is not a dataset's step (its manifest does not say expose: [step])")
            }
            if index == 0, !spec.unmasked, !manifest.middleware.contains("pii-mask") {
                throw DatasetError(.invalid, key: "chain[0]",
                                   "a chain starts with a function that masks personal data (one that declares pii-mask, such as validate)")
            }
        }
    }
}
