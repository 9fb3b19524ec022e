import Foundation
import Logging
import ServiceLifecycle
import Sluice
import Synchronization

/// The key set of an OAuth 2.0 / OpenID Connect provider, fetched from its JWKS URL (or the one
/// its discovery document names), kept in memory and fetched again so that a key rotation at
/// the provider needs no restart:
///
/// - on a schedule, while ``run()`` runs: every ``Configuration/refreshInterval`` (5 min), or
///   sooner when the response's `Cache-Control: max-age` says so (never sooner than
///   ``Configuration/minimumRefreshInterval``, 30 s); a failed fetch is tried again after 1 s,
///   doubling up to 30 s;
/// - when a token names a `kid` the set does not have: at most one such fetch per
///   ``Configuration/minimumRefreshInterval``, however many tokens ask; tokens that arrive
///   while a fetch is under way wait for it rather than starting another.
///
/// A fetch that fails keeps the last good set (and logs why, without secrets); until a first
/// set has been fetched, ``key(id:algorithm:)`` throws ``JWTFailure/keysUnavailable``.
public final class JWKSCache: Service, Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Where the key set is found.
        public enum Location: Sendable, Equatable {
            /// The key set's own URL (`SLUICE_JWT_JWKS_URL`).
            case keySet(String)
            /// An OpenID Connect discovery document (`…/.well-known/openid-configuration`) whose
            /// `jwks_uri` names the key set; its `issuer` must be `issuer` (OpenID Connect
            /// Discovery §4.3). Read again after the key set fails to come.
            case discovery(String, issuer: String)
        }

        public var location: Location
        /// How often the set is fetched on schedule (`SLUICE_JWT_JWKS_REFRESH`, default 5 min):
        /// the longest a key the provider has withdrawn is still taken, while the provider answers.
        public var refreshInterval: Duration
        /// At most one fetch for unknown `kid`s per this interval (30 s), and the shortest a
        /// `Cache-Control: max-age` may make the schedule.
        public var minimumRefreshInterval: Duration
        /// The longest one request may take (5 s).
        public var fetchTimeout: Duration
        /// The largest body taken (1 MiB).
        public var maximumDocumentSize: Int

        public init(location: Location, refreshInterval: Duration = .seconds(300), minimumRefreshInterval: Duration = .seconds(30),
                    fetchTimeout: Duration = .seconds(5), maximumDocumentSize: Int = 1 << 20) {
            self.location = location
            self.refreshInterval = refreshInterval
            self.minimumRefreshInterval = minimumRefreshInterval
            self.fetchTimeout = fetchTimeout
            self.maximumDocumentSize = maximumDocumentSize
        }
    }

    private struct State {
        var keySet: JWKSet?
        /// The key set's URL once the discovery document has named it.
        var discovered: String?
        var maxAge: Duration?
        /// When the last fetch for an unknown `kid` started.
        var lastOnDemand: ContinuousClock.Instant?
        /// The fetch under way, which every caller joins.
        var refreshing: Task<Bool, Never>?
    }

    public let configuration: Configuration
    private let fetcher: any JWKSFetching
    private let logger: Logger
    private let clock: @Sendable () -> ContinuousClock.Instant
    private let state = Mutex(State())

    /// A key set at `configuration.location`, fetched with `fetcher`. `clock` is injected for
    /// the tests of the refresh rate limit.
    public init(_ configuration: Configuration, fetcher: any JWKSFetching, logger: Logger,
                clock: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.configuration = configuration
        self.fetcher = fetcher
        self.logger = logger
        self.clock = clock
    }

    /// The set last fetched, if any.
    public var current: JWKSet? { state.withLock { $0.keySet } }

    /// The key for a token whose header names `id` and `algorithm`, fetching the set again
    /// once (rate-limited) when the set has no key of that `kid`.
    ///
    /// - Throws: ``JWTFailure/unknownKey`` when the `kid` is still unknown after that,
    ///   ``JWTFailure/keyIDRequired`` for a token without `kid` when the set has several keys,
    ///   ``JWTFailure/wrongAlgorithm`` when the `kid` is of a key for another algorithm, and
    ///   ``JWTFailure/keysUnavailable`` when no set has been fetched yet.
    public func key(id: String?, algorithm: JWTAlgorithm) async throws(JWTFailure) -> JWK {
        if current == nil { _ = await refresh(onDemand: true) }
        guard let set = current else { throw .keysUnavailable }
        switch set.key(id: id, algorithm: algorithm) {
        case .key(let key): return key
        case .keyIDRequired: throw .keyIDRequired
        case .wrongAlgorithm: throw .wrongAlgorithm
        case .unknownKeyID: break
        }
        _ = await refresh(onDemand: true)
        switch current?.key(id: id, algorithm: algorithm) {
        case .key(let key)?: return key
        case .keyIDRequired?: throw .keyIDRequired
        case .wrongAlgorithm?: throw .wrongAlgorithm
        case .unknownKeyID?, nil: throw .unknownKey
        }
    }

    /// Fetches the set now, or joins the fetch under way. A fetch on demand (for an unknown
    /// `kid`, or before any set) starts only if none started in the last
    /// `minimumRefreshInterval`; answers `nil` when it did not.
    ///
    /// - Returns: whether the fetch brought a set.
    @discardableResult
    public func refresh(onDemand: Bool) async -> Bool? {
        let task: Task<Bool, Never>? = state.withLock { state in
            if let running = state.refreshing { return running }
            if onDemand {
                let now = clock()
                if let last = state.lastOnDemand, now < last + configuration.minimumRefreshInterval { return nil }
                state.lastOnDemand = now
            }
            let task = Task { await self.fetchAndKeep() }
            state.refreshing = task
            return task
        }
        return await task?.value
    }

    private func fetchAndKeep() async -> Bool {
        let location: String
        switch configuration.location {
        case .keySet(let url): location = url
        case .discovery(let url, _): location = url
        }
        do {
            let url = try await keySetURL()
            let document = try await fetcher.fetch(url)
            let set: JWKSet
            do { set = try JWKSet(document: document.body) } catch { throw JWKSFetchError(error.description) }
            let previous = state.withLock { state in
                defer {
                    state.keySet = set
                    state.maxAge = document.maxAge
                    state.refreshing = nil
                }
                return state.keySet
            }
            let kids = set.keys.map { $0.keyID ?? "(none)" }
            if previous.map({ $0.keys.map(\.identity) }) != set.keys.map(\.identity) {
                var metadata: Logger.Metadata = ["url": .string(Self.redacted(url)), "kids": .array(kids.map { .string($0) })]
                if !set.ignored.isEmpty { metadata["ignored"] = .array(set.ignored.map { .string($0.description) }) }
                logger.info("JWT key set loaded", metadata: metadata)
                if set.keys.isEmpty { logger.warning("the JWT key set has no key this gateway can use: every token is refused", metadata: metadata) }
            }
            return true
        } catch {
            let kept = state.withLock { state in
                state.refreshing = nil
                state.discovered = nil  // the key set may have moved: read the discovery document again
                return state.keySet != nil
            }
            logger.warning(kept ? "could not fetch the JWT key set; keeping the last one" : "could not fetch the JWT key set; tokens cannot be checked until it comes",
                           metadata: ["url": .string(Self.redacted(location)), "error": .string(String(describing: error))])
            return false
        }
    }

    /// The key set's URL: configured, or read from the discovery document.
    private func keySetURL() async throws(JWKSFetchError) -> String {
        switch configuration.location {
        case .keySet(let url):
            return url
        case .discovery(let url, let issuer):
            if let known = state.withLock({ $0.discovered }) { return known }
            let document = try await fetcher.fetch(url)
            let keySet = try Self.keySetURL(discovery: document.body, issuer: issuer)
            state.withLock { $0.discovered = keySet }
            return keySet
        }
    }

    /// The `jwks_uri` of an OpenID Connect discovery document whose `issuer` is `issuer`.
    static func keySetURL(discovery body: [UInt8], issuer: String) throws(JWKSFetchError) -> String {
        guard case .object(let document)? = try? JSONParser(maxDepth: 16).parse(body) else {
            throw JWKSFetchError("the discovery document is not a JSON object")
        }
        guard document["issuer"]?.stringValue == issuer else {
            throw JWKSFetchError("the discovery document's issuer is not SLUICE_JWT_ISSUER")
        }
        guard let uri = document["jwks_uri"]?.stringValue, isHTTPURL(uri) else {
            throw JWKSFetchError("the discovery document has no http(s) jwks_uri")
        }
        return uri
    }

    /// Whether `text` is an absolute `http` or `https` URL with a host.
    public static func isHTTPURL(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty else { return false }
        return true
    }

    /// A URL for the log: no user information, query or fragment (they may hold a token).
    static func redacted(_ text: String) -> String {
        guard var components = URLComponents(string: text) else { return "(not a URL)" }
        components.user = nil
        components.password = nil
        components.query = nil
        components.fragment = nil
        return components.string ?? "(not a URL)"
    }

    /// When the next scheduled fetch is due after a good one: the refresh interval, or the
    /// server's `max-age` when that is shorter, but never under the minimum.
    public func nextRefresh() -> Duration {
        let maxAge = state.withLock { $0.maxAge } ?? configuration.refreshInterval
        return min(configuration.refreshInterval, max(maxAge, configuration.minimumRefreshInterval))
    }

    /// Fetches the set at once, then on schedule, until the process shuts down; then closes
    /// the fetcher's connections.
    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.schedule() }
        await fetcher.shutdown()
    }

    private func schedule() async {
        let longestRetry = min(.seconds(30), configuration.refreshInterval)
        var retry = Duration.seconds(1)
        while !Task.isCancelled {
            let delay: Duration
            if await refresh(onDemand: false) == true {
                retry = .seconds(1)
                delay = nextRefresh()
            } else {
                delay = retry
                retry = min(retry * 2, longestRetry)
            }
            do { try await Task.sleep(for: delay) } catch { return }
        }
    }
}
