import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Sluice
import SluiceFunctions
import SluiceHTTP
import SluicePostgres
import SluiceRedis

/// Assembles one process: the clients, the migrations, every function's triggers and the HTTP
/// server, run as services of one `ServiceGroup` that SIGTERM drains.
struct FunctionHost {
    /// The longest a SIGTERM drain may take before the remaining work is cancelled.
    static let drainLimit = DeploySettings.drainLimit

    let configuration: RuntimeConfiguration
    let logger: Logger

    /// The clients a process shares. Close with ``shutdown()``.
    struct Clients {
        let threadPool: NIOThreadPool
        let redis: RedisClient
        let postgres: PostgresPool
        let keys: StreamKeys

        /// The functions' dependencies over these clients.
        func dependencies(manifests: ManifestLoader, hosted: Set<String> = []) -> PipelineDependencies {
            PipelineDependencies(redis: redis, postgres: postgres, keys: keys, manifests: manifests, hosted: hosted)
        }

        func shutdown() async {
            redis.closeIdle()
            try? await threadPool.shutdownGracefully()
        }
    }

    /// Creates the clients (connections open lazily).
    func makeClients(concurrency: Int) throws -> Clients {
        // Blocking calls: one per in-flight chunk and blocking read, plus requests and upkeep.
        let threadPool = NIOThreadPool(numberOfThreads: max(8, concurrency * 2 + 6))
        threadPool.start()
        let endpoint: RedisEndpoint
        do {
            endpoint = try RedisEndpoint(url: configuration.redisURL)
        } catch {
            throw CommandFailure("SLUICE_REDIS_URL: \(error.message)")
        }
        return Clients(
            threadPool: threadPool,
            redis: RedisClient(endpoint: endpoint, threadPool: threadPool, maxIdle: max(8, concurrency * 2 + 4)),
            postgres: PostgresPool(url: configuration.databaseURL, threadPool: threadPool, maxConnections: max(4, concurrency + 2)),
            keys: StreamKeys(hashTag: configuration.hashTag))
    }

    /// Applies the migrations, waiting (with backoff, up to `patience`) for PostgreSQL.
    func migrate(_ clients: Clients, patience: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + patience
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await Migrator(pool: clients.postgres, migrations: PipelineSchema.migrations, logger: logger).migrate()
                try await DatasetStore(pool: clients.postgres).registerFiles(
                    in: configuration.datasetsDirectory, functions: ManifestLoader(functionsDirectory: configuration.functionsDirectory), logger: logger)
                return
            } catch let error as PostgresError where error.sqlState == "42501" {
                // A function's own role (`sluice migrate --roles`) may not change the schema or the
                // catalog: `sluice migrate` does, and readiness waits for it.
                logger.notice("this database role may not apply migrations or register datasets: run `sluice migrate`",
                               metadata: ["error": .string(error.code.rawValue), "sqlstate": "42501"])
                return
            } catch let error as PostgresError where error.code == .unavailable && ContinuousClock.now < deadline {
                logger.warning("waiting for PostgreSQL", metadata: ["error": .string(error.code.rawValue)])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// The name ServiceLifecycle logs for a service: its own description when it has one, else its
    /// type. ServiceLifecycle's default, `"\(service)"`, prints the whole value by reflection: for the
    /// calls worker, whose value holds every function's API description, that was 12 ms of the
    /// 52 ms of CPU a start took.
    static func serviceName(_ service: any Service) -> String {
        if let described = service as? any CustomStringConvertible { return described.description }
        return String(describing: type(of: service))
    }

    /// Runs `manifests` until SIGTERM or SIGINT.
    func run(manifests: [Manifest], host: String, port: Int, registry: PipelineRegistry = BuiltinFunctions.registry()) async throws {
        let prometheus = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: prometheus))

        let clients = try makeClients(concurrency: manifests.map(\.concurrency).reduce(0, +))
        do {
            // Connections the first readiness check would otherwise open (it asks Redis and, at
            // once, PostgreSQL twice), opened while the migrations are checked. Not awaited: an
            // unreachable Redis must not hold the start up for its connect timeout.
            let warmRedis = clients.redis, warmPostgres = clients.postgres
            Task { _ = await warmRedis.ping() }
            Task { _ = await warmPostgres.ping() }
            try await migrate(clients)
            let dependencies = clients.dependencies(manifests: ManifestLoader(functionsDirectory: configuration.functionsDirectory),
                                                    hosted: Set(manifests.map(\.name)))
            let router = Router(context: SluiceRequestContext.self)
            router.add(middleware: ProblemMiddleware())
            var invokers: [String: FunctionInvoker] = [:]
            var triggers: [any Service] = []
            // The processes of functions in other languages: stopped after the triggers drain.
            var supervised: [any Service] = []
            var readiness: [(String, HealthCheck.Probe)] = []
            var httpFunctions: [any HTTPFunction] = []
            let consumer = StreamTrigger.uniqueConsumerName()
            for manifest in manifests {
                var functionLogger = logger
                functionLogger[metadataKey: "function"] = .string(manifest.name)
                let setup = PipelineSetup(manifest: manifest, logger: functionLogger, configuration: configuration,
                                          dependencies: dependencies, registry: registry)
                let handler = try await registry.makeHandler(setup)
                if let function = handler as? any EventFunction {
                    let invoker = FunctionInvoker(manifest: manifest, function: function, logger: logger)
                    invokers[manifest.name] = invoker
                    if manifest.inputStream != nil {
                        triggers.append(StreamTrigger(
                            invoker: invoker, redis: clients.redis, router: dependencies.router,
                            configuration: .init(keys: clients.keys, consumerName: consumer), logger: logger))
                    }
                } else if let function = handler as? any HTTPFunction {
                    httpFunctions.append(function)
                    triggers += function.backgroundServices
                }
                if manifest.servesHTTP, !(handler is any HTTPFunction) {
                    throw ManifestError(.badValue, file: manifest.file, key: "triggers",
                                        message: "declares an http trigger but handler '\(manifest.handler)' serves no routes")
                }
                if manifest.inputStream != nil, !(handler is any EventFunction) {
                    throw ManifestError(.badValue, file: manifest.file, key: "triggers",
                                        message: "declares a stream trigger but handler '\(manifest.handler)' is not an event function")
                }
            }
            supervised += dependencies.shared.takeProcessServices()
            for supervisor in dependencies.shared.supervisors {
                readiness.append(("function \(supervisor.name)", { supervisor.isReady }))
            }
            // What the functions share (the consent book and its listener) runs with them.
            triggers += dependencies.shared.takeServices()
            // Middleware first: it applies only to routes added after it.
            for function in httpFunctions { function.addMiddleware(to: router) }
            // Then the check that a request comes through the gateway (which, hosted here, has just
            // made its assertion): every route but the probes and metrics.
            let callerVerifier: CallerAssertionVerifier?
            do {
                callerVerifier = try CallerAssertionVerifier.from(configuration)
            } catch {
                throw CommandFailure(error.description)
            }
            if callerVerifier == nil, let exposed = manifests.first(where: { $0.servesHTTP && $0.handler != "gateway" }) {
                throw CommandFailure("\(exposed.name) serves HTTP routes but cannot check who calls them: set SLUICE_GATEWAY_PUBLIC_KEY (the gateway's public key; `sluice keys` makes a pair)")
            }
            router.add(middleware: CallerMiddleware(verifier: callerVerifier, functions: Set(manifests.map(\.name)), logger: logger))
            // After the gateway's checks (it names the caller), before the routes: every API
            // request this process answers writes an audit row.
            let audited = manifests.flatMap { BuiltinFunctions.operations[$0.handler] ?? [] }
                .filter { $0.tag != "meta" && !PrivacyFunction.selfAudited.contains($0.operationID) }
            if !audited.isEmpty {
                router.add(middleware: AuditMiddleware(operations: audited, pool: clients.postgres,
                                                         masker: AuditResource.masker(key: configuration.pseudonymKey), logger: logger))
            }
            for function in httpFunctions { function.addRoutes(to: router) }
            let redis = clients.redis, postgres = clients.postgres
            let migrator = Migrator(pool: postgres, migrations: PipelineSchema.migrations, logger: logger)
            RuntimeRoutes(
                invokers: invokers,
                health: HealthCheck([
                    ("redis", { @Sendable in await redis.ping() }),
                    ("postgres", { @Sendable in await postgres.ping() }),
                    ("migrations", { @Sendable in (try? await migrator.isCurrent()) ?? false }),
                ] + readiness),
                metrics: prometheus,
                servesMetrics: configuration.metricsPort == nil
            ).add(to: router)

            let app = Application(
                router: router,
                server: .http1(configuration: .init(additionalChannelHandlers: [ParserErrorHandler(), ExpectContinueHandler()],
                                                    idleTimeout: TimeAmount(configuration.httpIdleTimeout))),
                configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
                logger: logger)
            // `/metrics` on a port of its own when asked (SLUICE_METRICS_PORT): the published port
            // of the gateway then answers only the API.
            var servers: [any Service] = [app]
            if let metricsPort = configuration.metricsPort {
                let metricsRouter = Router()
                metricsRouter.get("/metrics") { _, _ -> Response in RuntimeRoutes.metricsResponse(prometheus) }
                servers.append(Application(router: metricsRouter,
                                           configuration: .init(address: .hostname(host, port: metricsPort), serverName: "sluice-metrics"),
                                           logger: logger))
            }
            // Services stop in reverse order: the triggers drain first, then the HTTP servers.
            var groupConfiguration = ServiceGroupConfiguration(
                services: (servers + supervised + triggers).map { .init(service: $0, serviceName: Self.serviceName($0)) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [],
                logger: logger)
            // A drain that cannot finish (Redis gone for good) is cancelled before Kubernetes'
            // default 30 s grace ends; what was not acknowledged stays pending and is reclaimed.
            groupConfiguration.maximumGracefulShutdownDuration = Self.drainLimit
            let group = ServiceGroup(configuration: groupConfiguration)
            logger.info("serving", metadata: [
                "functions": .string(manifests.map(\.name).joined(separator: ",")),
                "port": .stringConvertible(port), "redis": .string(clients.redis.endpoint.description),
            ])
            try await group.run()
        } catch {
            await clients.shutdown()
            throw error
        }
        await clients.shutdown()
    }
}
