import Foundation
import Sluice
import SluiceDeploy
import Testing
import Yams

/// Every function started exactly as `sluice render compose` says its container starts: the
/// service's command and environment and nothing else (no inherited variables but PATH, which the image sets), each a separate
/// process. The only changes are the ones a container network makes for free: service host
/// names (`redis`, `postgres`, `ingest`, …) become this machine's test servers and ports, each
/// process gets its own port on 127.0.0.1 (`--port P --host 127.0.0.1` appended), and
/// `/app/functions` (where the image copies `functions/`) is the repository's `functions/`.
@Suite(.serialized) struct ContainerContractEndToEndTests {
    static let image = "sluice:e2e"
    static let jwtSecret = "the container tests' JWT secret, 32+ bytes long"
    /// The rendered gateway requires both (SLUICE_JWT_REQUIRE_ISSUER_AUDIENCE).
    static let issuer = "https://issuer.example.test/"
    static let audience = "sluice-containers"

    /// A rendered compose service that runs the sluice image.
    struct Service {
        let name: String
        let command: [String]
        let environment: [String: String]
    }

    /// `${NAME:?message}`, `${NAME:-default}` and `${NAME}` as Compose interpolates them.
    static func interpolate(_ text: String, _ variables: [String: String]) throws -> String {
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { throw TestSetupError("unclosed ${ in \(text)") }
            let body = rest[start.upperBound..<end]
            if let separator = body.range(of: ":?") {
                let name = String(body[..<separator.lowerBound])
                guard let value = variables[name], !value.isEmpty else { throw TestSetupError("compose requires \(name): \(body[separator.upperBound...])") }
                out += value
            } else if let separator = body.range(of: ":-") {
                let value = variables[String(body[..<separator.lowerBound])] ?? ""
                out += value.isEmpty ? String(body[separator.upperBound...]) : value
            } else {
                out += variables[String(body)] ?? ""
            }
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    /// The `services` of `sluice render compose --image IMAGE`, parsed.
    static func renderedServices(image: String) async throws -> [String: Any] {
        let environment = try TestEnvironment.get()
        let rendered = try await runCommand(environment.binary, ["render", "compose", "--image", image],
                                            environment: ["SLUICE_FUNCTIONS_DIR": "\(environment.packageRoot)/functions"])
        guard rendered.status == 0, let document = try Yams.load(yaml: rendered.output) as? [String: Any],
              let services = document["services"] as? [String: Any]
        else { throw TestSetupError("sluice render compose failed: \(rendered.error)") }
        return services
    }

    /// Every shipped function's database role password (`SLUICE_DB_PASSWORD_NAME`), URL-safe.
    static var rolePasswords: [String: String] {
        let root = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let names = (try? ManifestLoader(functionsDirectory: "\(root)/functions").functionNames()) ?? []
        return Dictionary(uniqueKeysWithValues: names.map { name in
            ("SLUICE_DB_PASSWORD_" + name.uppercased().replacingOccurrences(of: "-", with: "_"), "role-password-\(name)")
        })
    }

    static func services(variables: [String: String]) async throws -> (services: [Service], all: [String]) {
        let services = try await renderedServices(image: image)
        var result: [Service] = []
        for (name, value) in services {
            guard let service = value as? [String: Any], service["image"] as? String == image else { continue }
            guard let command = service["command"] as? [String], let variablesOfService = service["environment"] as? [String: String] else {
                throw TestSetupError("service \(name) has no command or environment")
            }
            var resolved: [String: String] = [:]
            for (key, text) in variablesOfService { resolved[key] = try interpolate(text, variables) }
            result.append(Service(name: name, command: command, environment: resolved))
        }
        return (result.sorted { $0.name < $1.name }, services.keys.sorted())
    }

    @Test func everyFunctionRunsAsItsContainerWould() async throws {
        let environment = try TestEnvironment.get()
        let root = environment.packageRoot
        let directory = try makeTemporaryDirectory("containers")
        let databaseURL = try await environment.freshDatabase("sluice_e2e_containers")
        let clients = try TestClients(environment: environment, db: 6, databaseURL: databaseURL)
        try await clients.redis.send(["FLUSHDB"])
        let (services, all) = try await Self.services(variables: [
            "POSTGRES_PASSWORD": "not-used-here", "SLUICE_JWT_SECRET": Self.jwtSecret, "SLUICE_PSEUDONYM_KEY": PipelineFixture.pseudonymKey,
            "SLUICE_WEBHOOK_SECRET": PipelineFixture.webhookSecret, "SLUICE_LOG_LEVEL": "debug",
            "SLUICE_JWT_ISSUER": Self.issuer, "SLUICE_JWT_AUDIENCE": Self.audience,
            "SLUICE_GATEWAY_SIGNING_KEY": TestCaller.signingKey, "SLUICE_GATEWAY_PUBLIC_KEY": TestCaller.publicKey,
        ].merging(Self.rolePasswords, uniquingKeysWith: { $1 }))
        let functions = try ManifestLoader(functionsDirectory: "\(root)/functions").functionNames()
        // Compose names every function, and runs each with `serve NAME`.
        #expect(services.filter { $0.name != "migrate" }.map(\.name) == functions)
        #expect(all == (functions + ["migrate", "postgres", "prometheus", "redis"]).sorted())
        for service in services where service.name != "migrate" { #expect(service.command == ["serve", service.name]) }
        let migrate = try #require(services.first { $0.name == "migrate" })
        #expect(migrate.command == ["migrate", "--roles"])

        var ports: [String: Int] = [:], metricsPorts: [String: Int] = [:]
        for name in functions { ports[name] = freePort(); metricsPorts[name] = freePort() }
        /// The service's environment with the container network's names resolved to this machine.
        func local(_ service: Service) throws -> [String: String] {
            var mapped: [String: String] = [:]
            for (key, value) in service.environment {
                if key == "SLUICE_METRICS_PORT" {
                    // Each container has the port to itself; here they share one machine.
                    #expect(value == String(DeploymentRenderer.metricsPort))
                    mapped[key] = String(metricsPorts[service.name] ?? freePort())
                } else if value.hasPrefix("redis://redis:6379/") {
                    mapped[key] = environment.redisURL(db: 6)
                } else if value.contains("@postgres:5432/"), let user = URLComponents(string: value)?.user, user != "sluice",
                          var own = URLComponents(string: databaseURL) {
                    // A function logs in as its own role (`migrate --roles` makes it), on the test's database.
                    #expect(user == Manifest.databaseRole(for: service.name), "\(service.name): \(user)")
                    own.user = user
                    own.password = URLComponents(string: value)?.password
                    mapped[key] = own.string
                } else if value.contains("@postgres:5432/") {
                    mapped[key] = databaseURL
                } else if value == "/app/functions" {
                    mapped[key] = "\(root)/functions"
                } else if let host = ports.keys.first(where: { value == "http://\($0):8080" }) {
                    mapped[key] = "http://127.0.0.1:\(ports[host]!)"
                } else {
                    for host in all where value.contains("//\(host):") || value.contains("@\(host):") {
                        throw TestSetupError("\(service.name): \(key) points at \(host), which the test does not map")
                    }
                    mapped[key] = value
                }
            }
            return mapped
        }

        var processes: [String: SluiceProcess] = [:]
        let outcome: Result<Void, any Error>
        do {
            outcome = .success(try await {
                let migration = try SluiceProcess(binary: environment.binary, arguments: migrate.command, environment: try local(migrate),
                                                  name: "migrate", port: 0, logDirectory: directory)
                #expect(await migration.waitExit(timeout: .seconds(60)) == 0, "\(migration.tail())")
                for service in services where service.name != "migrate" {
                    let port = ports[service.name]!
                    let process = try SluiceProcess(binary: environment.binary, arguments: service.command + ["--port", "\(port)", "--host", "127.0.0.1"],
                                                    environment: try local(service), name: service.name, port: port,
                                                    logDirectory: directory)
                    processes[service.name] = process
                }
                for process in processes.values { try await process.waitReady() }
                // The image's HEALTHCHECK (`sluice health`) passes on a running function and fails
                // where nothing answers.
                let validatePort = String(ports["validate"]!)
                let live = try await runCommand(environment.binary, ["health", "--port", validatePort])
                #expect(live.status == 0, "\(live.error)")
                let ready = try await runCommand(environment.binary, ["health", "--port", validatePort, "--path", "/health/ready"])
                #expect(ready.status == 0, "\(ready.error)")
                let missing = try await runCommand(environment.binary, ["health", "--port", validatePort, "--path", "/health/nothing"])
                #expect(missing.status == 1)
                #expect(missing.error.contains("/health/nothing answered 404"), "\(missing.error)")
                let closed = freePort()
                let nobody = try await runCommand(environment.binary, ["health", "--port", String(closed)])
                #expect(nobody.status == 1)
                #expect(nobody.error.contains("no answer on 127.0.0.1:\(closed)/health/live"), "\(nobody.error)")

                // An upload through the gateway, as a user makes it, followed to its end.
                let workload = try await GeneratedWorkload.make(count: 3000, seed: 606, format: "ndjson", in: directory)
                let token = try await runCommand(environment.binary, ["token", "--subject", "container-e2e", "--roles", "ingest,analyst"],
                                                 environment: ["SLUICE_JWT_SECRET": Self.jwtSecret, "SLUICE_JWT_ISSUER": Self.issuer,
                                                               "SLUICE_JWT_AUDIENCE": Self.audience])
                #expect(token.status == 0, "\(token.error)")
                let bearer = token.output.trimmingCharacters(in: .whitespacesAndNewlines)
                let gateway = "http://127.0.0.1:\(ports["gateway"]!)"
                let trace = "5ce0e9a56015fec5aadfa328ae398115"
                let upload = try await runCommand("/usr/bin/curl", [
                    "-sS", "-H", "Authorization: Bearer \(bearer)", "-H", "Content-Type: application/x-ndjson",
                    "-H", "traceparent: 00-\(trace)-ab42124a3c573678-01", "--data-binary", "@\(workload.path)", "\(gateway)/api/v1/ingest",
                ])
                let job = try #require(try JSONParser().parse(Array(upload.output.utf8))["job_id"]?.stringValue, "\(upload.output)")
                var last: JSONValue = .null
                let deadline = ContinuousClock.now + .seconds(120)
                while ContinuousClock.now < deadline {
                    let answer = try await HTTP.request("GET", "\(gateway)/api/v1/jobs/\(job)", headers: ["Authorization": "Bearer \(bearer)"])
                    last = (try? JSONParser().parse(Array(answer.body))) ?? .null
                    if ["completed", "failed", "cancelled"].contains(last["status"]?.stringValue ?? "") { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(last["status"]?.stringValue == "completed", "\(last.serializedString)")
                #expect(last.count("received") == workload.count)
                for name in ["loaded", "quarantined", "stale", "duplicate", "no_consent"] {
                    #expect(last.count(name) == workload.expected[name], "counts.\(name)")
                }
                let rows = try await clients.postgres.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid")
                #expect(rows.scalar == String(workload.expected["loaded"]!))
                // Every stage that wrote did so as its own role, not as the owner.
                let users = Set(try await clients.postgres.query(
                    "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = current_database() AND usename IS NOT NULL").decode(String.self))
                for name in ["ingest", "load", "jobs", "enrich"] { #expect(users.contains("sluice_\(name)"), "\(name): \(users.sorted())") }

                // The trace followed the upload through every stream hop, each stage its own process.
                #expect(jsonLogLines(processes["ingest"]!.log).contains { $0["msg"] == "upload received" && $0["trace"] == trace && $0["job"] == job })
                for name in ["validate", "enrich", "transform", "load", "quarantine", "jobs", "notify"] {
                    let lines = jsonLogLines(processes[name]!.log).filter { $0["msg"] == "chunk acknowledged" && $0["trace"] == trace }
                    #expect(!lines.isEmpty, "\(name) logged no chunk of trace \(trace):\n\(processes[name]!.tail(5))")
                    #expect(lines.allSatisfy { $0["function"] == name && $0["level"] == "debug" && $0["ts"] != nil }, "\(name): \(lines.prefix(2))")
                }
                // Each function reports its own metrics.
                for name in ["validate", "enrich", "transform", "load"] {
                    let series = metricSeries(try await HTTP.request("GET", "http://127.0.0.1:\(metricsPorts[name]!)/metrics").text)
                    #expect((series["sluice_invocations_total{function=\"\(name)\",trigger=\"stream\"}"] ?? 0) >= 1, "\(name)")
                    #expect(series["sluice_stream_lag{function=\"\(name)\"}"] != nil, "\(name)")
                }
                // Not on the published port: only on the metrics port.
                #expect(try await HTTP.request("GET", "\(gateway)/metrics").status == 404)
                let gatewaySeries = metricSeries(try await HTTP.request("GET", "http://127.0.0.1:\(metricsPorts["gateway"]!)/metrics").text)
                #expect(gatewaySeries[#"sluice_gateway_requests_total{method="POST",route="/api/v1/ingest",status="202"}"#] == 1)

                // SIGTERM drains each process to exit 0 well inside the grace period it is given.
                for (name, process) in processes {
                    process.signal(SIGTERM)
                    let status = await process.waitExit(timeout: .seconds(Int64(DeploySettings.drainLimit.components.seconds) + 5))
                    #expect(status == 0, "\(name) exited with \(String(describing: status)) after SIGTERM:\n\(process.tail(5))")
                }
            }())
        } catch {
            outcome = .failure(error)
        }
        for process in processes.values { await process.stop() }
        await clients.shutdown()
        try outcome.get()
    }
}
