import Logging
import Sluice
import SluicePostgres
import SluiceRedis
import ServiceLifecycle
import Synchronization

/// What the built-in functions of one process share, passed to every factory as typed values:
/// a function's initializer says which of them it uses, and a process that lacks one does not
/// compile (no look-up by type at start-up).
public struct PipelineDependencies: Sendable {
    public var redis: RedisClient
    public var postgres: PostgresPool
    /// The datasets' specs and tables.
    public var datasets: DatasetStore
    /// Routes each chunk along its dataset's chain (stream triggers and ingest use it).
    public var router: DatasetRouter
    public var keys: StreamKeys
    /// The folder of manifests, for functions that build other stages (ingest's dry run, calls).
    public var manifests: ManifestLoader
    /// The functions this process runs: the gateway calls those in-process.
    public var hosted: Set<String>
    /// The objects several functions of the process share, and the services they run.
    public var shared: SharedServices
    /// Named functions for transform's `plugin` rule.
    public var transformPlugins: TransformPluginRegistry
    /// Stages built for a dry run record nothing (ingest's `POST /api/v1/process/transform`).
    public var dryRun: Bool

    public init(redis: RedisClient, postgres: PostgresPool, keys: StreamKeys = StreamKeys(), manifests: ManifestLoader,
                hosted: Set<String> = [], shared: SharedServices = SharedServices(),
                transformPlugins: TransformPluginRegistry = TransformPluginRegistry(), dryRun: Bool = false) {
        self.redis = redis
        self.postgres = postgres
        datasets = DatasetStore(pool: postgres)
        router = DatasetRouter(datasets: datasets, manifests: manifests)
        self.keys = keys
        self.manifests = manifests
        self.hosted = hosted
        self.shared = shared
        self.transformPlugins = transformPlugins
        self.dryRun = dryRun
    }

    /// The job store over these clients.
    func jobs(logger: Logger) -> JobStore {
        JobStore(pool: postgres, redis: redis, keys: keys, logger: logger)
    }
}

/// A built-in function's setup.
public typealias PipelineSetup = FunctionSetup<PipelineDependencies>
/// The registry of the built-in functions.
public typealias PipelineRegistry = FunctionRegistry<PipelineDependencies>

/// The objects several functions of one process share (one consent book and its listener, one
/// notification delivery worker), made on first use, and the services they need run (the host
/// runs them with the functions' triggers).
public final class SharedServices: Sendable {
    private struct State {
        var consentBook: ConsentBook?
        var deliveryWorker: DeliveryWorker?
        var services: [any Service] = []
        /// The supervisors of functions' processes and what they need closed, stopped after
        /// the triggers (which drain through them).
        var processServices: [any Service] = []
        var supervisors: [ProcessSupervisor] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// The process's consent book (its listener runs as a service).
    func consentBook(_ make: () -> ConsentBook) -> ConsentBook {
        state.withLock { state in
            if let book = state.consentBook { return book }
            let book = make()
            state.consentBook = book
            state.services.append(book.listener)
            return book
        }
    }

    /// Starts the process's one notification delivery worker, unless it runs already.
    func startDeliveryWorker(_ make: () -> DeliveryWorker) {
        state.withLock { state in
            guard state.deliveryWorker == nil else { return }
            let worker = make()
            state.deliveryWorker = worker
            state.services.append(worker)
        }
    }

    /// Registers the services of a function in a process of its own.
    func addProcessServices(_ services: [any Service], supervisor: ProcessSupervisor?) {
        state.withLock { state in
            state.processServices += services
            if let supervisor { state.supervisors.append(supervisor) }
        }
    }

    /// The services of functions in processes of their own, each handed out once: the host
    /// stops them after the stream triggers.
    public func takeProcessServices() -> [any Service] {
        state.withLock { state in
            defer { state.processServices.removeAll() }
            return state.processServices
        }
    }

    /// The supervisors of functions' processes (for readiness).
    public var supervisors: [ProcessSupervisor] { state.withLock { $0.supervisors } }

    /// The services registered so far, each handed out once.
    public func takeServices() -> [any Service] {
        state.withLock { state in
            defer { state.services.removeAll() }
            return state.services
        }
    }
}
