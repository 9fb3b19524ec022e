/// A function's manifest, read from `functions/NAME/function.yaml`.
///
/// ```yaml
/// handler: tag                 # the registered handler
/// triggers:
///   - stream: tag              # consume the stream `tag` with the consumer group `tag`
///   - http: {}                 # serve the handler's HTTP routes (HTTP functions)
/// outputs: [filter]            # streams that forwarded events are appended to
/// middleware: [deadline]       # applied in this order, the first outermost
/// batch: 500                   # most events in one chunk this function writes
/// max_chunk_bytes: 4194304     # most bytes of events in one chunk this function writes
/// linger: 50ms                 # longest wait to fill a chunk before writing it
/// concurrency: 4               # chunks handled at once (in flight: concurrency × batch events)
/// visibility_timeout: 30s      # a chunk held longer by a silent consumer is reclaimed
/// retry: {max_attempts: 5, initial_backoff: 200ms, max_backoff: 30s, jitter: 0.2}
/// dead_letters: {max_age: 7d, max_length: 10000}   # how long its dead letters are kept (``DeadLetterPolicy``)
/// environment: {KEY: value}    # configuration values for the handler
/// config: {...}                # free-form settings of the handler (rules, tables)
/// counts_as: loaded            # events it forwards reach their end here: the job counter they add to
/// deploy: {replicas: {min: 1, max: 8}, lag_count: 10}   # how `sluice render` deploys it (``DeploySettings``)
/// runtime: {command: [python3, handler.py]}   # a function in a process of its own (``FunctionRuntime``)
/// ```
public struct Manifest: Sendable, Equatable {
    /// How a function is invoked.
    public enum Trigger: Sendable, Equatable {
        /// Consume the named stream with a consumer group named after the function.
        case stream(String)
        /// Serve the handler's HTTP routes.
        case http
    }

    /// The function's name (its folder's name).
    public var name: String
    /// The registered handler that implements it.
    public var handler: String
    /// What it does, for people.
    public var description: String?
    /// How it is invoked.
    public var triggers: [Trigger]
    /// Streams that forwarded events are appended to.
    public var outputs: [String]
    /// Middleware names, outermost first.
    public var middleware: [String]
    /// The most events in one chunk the function writes.
    public var batch: Int
    /// The most bytes of events (the `events` field, or `shape` and `rows`) in one chunk the
    /// function writes; a chunk is cut at `batch` events or at this size, whichever comes first.
    /// An event larger than this alone goes in a chunk of its own (ingest quarantines it instead).
    public var maxChunkBytes: Int = Manifest.defaultMaxChunkBytes
    /// The default of `max_chunk_bytes`: 4 MiB.
    public static let defaultMaxChunkBytes = 4 << 20
    /// The most events one event may become (`fan_out: {per_event: …}`); an event whose answer
    /// holds more is quarantined whole as `fan_out_too_large`, never written.
    public var maxFanOutPerEvent: Int = 1000
    /// The most events the fan-outs of one chunk may add up to (`fan_out: {per_chunk: …}`):
    /// past it, each further fanned-out event is quarantined as `fan_out_too_large`, so that one
    /// answer cannot become millions of entries in one acknowledgement.
    public var maxFanOutPerChunk: Int = 20_000
    /// The longest wait to fill a chunk before writing it.
    public var linger: Duration
    /// Chunks handled at once.
    public var concurrency: Int
    /// How long a delivered chunk may stay unacknowledged before another consumer reclaims it.
    public var visibilityTimeout: Duration
    /// Retries and backoff.
    public var retry: RetryPolicy
    /// How long the function's dead letters are kept.
    public var deadLetters = DeadLetterPolicy()
    /// Configuration values for the handler.
    public var environment: [String: String]
    /// Free-form settings of the handler.
    public var config: JSONValue
    /// For a function at the end of a pipeline: the job counter (`loaded` or `quarantined`)
    /// that the events it forwards are added to, as they have reached their terminal state.
    public var countsAs: String?
    /// How `sluice render` deploys the function.
    public var deploy = DeploySettings()
    /// The ways in beyond the function's triggers that it opts into (`expose: [async]`): an
    /// event function is callable through `POST /api/v1/functions/{name}/async` only when it
    /// lists `async` here, and only when it declares `pii-mask` (a call stores its events).
    public var expose: Set<Exposure> = []
    /// How a function outside the `sluice` binary is reached (``FunctionRuntime``); nil for a
    /// built-in handler.
    public var runtime: FunctionRuntime?
    /// The file the manifest was read from (for error messages).
    public var file: String

    /// Creates a manifest with the documented defaults.
    public init(
        name: String, handler: String, description: String? = nil, triggers: [Trigger] = [],
        outputs: [String] = [], middleware: [String] = [], batch: Int = 500,
        linger: Duration = .milliseconds(50), concurrency: Int = 2,
        visibilityTimeout: Duration = .seconds(30), retry: RetryPolicy = RetryPolicy(),
        environment: [String: String] = [:], config: JSONValue = .object([:]), file: String = "<memory>"
    ) {
        self.name = name
        self.handler = handler
        self.description = description
        self.triggers = triggers
        self.outputs = outputs
        self.middleware = middleware
        self.batch = batch
        self.linger = linger
        self.concurrency = concurrency
        self.visibilityTimeout = visibilityTimeout
        self.retry = retry
        self.environment = environment
        self.config = config
        self.file = file
    }

    /// The stream this function consumes, if it has a stream trigger.
    public var inputStream: String? {
        for case .stream(let name) in triggers { return name }
        return nil
    }

    /// A way in a function may opt into.
    public enum Exposure: String, Sendable, CaseIterable {
        /// Asynchronous calls by API callers (the `calls` function).
        case async
        /// A step of a dataset's `chain`: an event function that takes a dataset's records and
        /// forwards them on (validate, enrich, transform, load; a function with a `runtime` is
        /// one without saying so). Internal stages (jobs, notify, quarantine) are not.
        case step
    }

    /// Whether a dataset's chain may name this function (``Exposure/step``, or a `runtime`).
    public var isDatasetStep: Bool { inputStream != nil && (expose.contains(.step) || runtime != nil) }

    /// The values `counts_as` may take.
    public static let terminalCounters: Set<String> = ["loaded", "quarantined"]

    /// Whether the function serves HTTP routes of its own.
    public var servesHTTP: Bool { triggers.contains(.http) }
}

extension Manifest {
    /// The duration at `config.KEY` (`"60s"`, `"24h"`), or `fallback` when the key is absent.
    /// - Throws: ``ManifestError`` `.badDuration` naming the key when it is not a duration.
    public func configDuration(_ key: String, default fallback: Duration) throws -> Duration {
        guard let value = config[key] else { return fallback }
        guard let text = value.stringValue, let parsed = DurationParser.parse(text) else {
            throw ManifestError(.badDuration, file: file, key: "config.\(key)", message: "is not a duration (write e.g. 60s)")
        }
        return parsed
    }
}
