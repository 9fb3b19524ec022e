import Foundation
import Sluice
import Testing
import Yams

/// The image as it ships, built by `scripts/image.sh` (which `make test` runs first) and run with
/// podman. Every service of the rendered Compose file is its own container on one network, with
/// the service's image, command, environment and hardening (read-only root file system, `/tmp` a
/// tmpfs, no capabilities, no new privileges), each function listening on 8080 in its own network
/// namespace as in a pod: Redis and PostgreSQL are the local stand-ins `scripts/base-image.sh`
/// makes. Only the published ports differ (free ports on 127.0.0.1, so that the test can reach
/// the gateway and PostgreSQL), and Prometheus is not started (its image cannot be made here).
/// `podman-compose` then runs `infra/compose.yaml` itself.
@Suite(.serialized) struct ContainerImageEndToEndTests {
    static var image: String { ProcessInfo.processInfo.environment["SLUICE_IMAGE"] ?? "localhost/sluice:latest" }
    /// URL-safe: Compose puts it into SLUICE_DATABASE_URL as it is.
    static let password = "image-e2e-postgres-password"

    /// The variables Compose interpolates (`.env` for a user).
    static var variables: [String: String] {
        ["POSTGRES_PASSWORD": password, "SLUICE_JWT_SECRET": ContainerContractEndToEndTests.jwtSecret,
         "SLUICE_PSEUDONYM_KEY": PipelineFixture.pseudonymKey, "SLUICE_WEBHOOK_SECRET": PipelineFixture.webhookSecret,
         "SLUICE_JWT_ISSUER": ContainerContractEndToEndTests.issuer, "SLUICE_JWT_AUDIENCE": ContainerContractEndToEndTests.audience,
         "SLUICE_GATEWAY_SIGNING_KEY": TestCaller.signingKey, "SLUICE_GATEWAY_PUBLIC_KEY": TestCaller.publicKey]
            .merging(ContainerContractEndToEndTests.rolePasswords, uniquingKeysWith: { $1 })
    }

    /// One rendered Compose service, as `podman run` is given it.
    struct Service {
        let name: String
        let image: String
        let command: [String]
        let environment: [String: String]
        /// `read_only`, `tmpfs`, `cap_drop` and `security_opt` as podman flags.
        let hardening: [String]
        /// The health check's command (`CMD` form), if the service declares one.
        let healthcheck: [String]?
        let stopGrace: Int?
        let ports: [String]
    }

    /// The services of `sluice render compose --image IMAGE`, interpolated with ``variables``.
    static func services(image: String) async throws -> [String: Service] {
        let services = try await ContainerContractEndToEndTests.renderedServices(image: image)
        var result: [String: Service] = [:]
        for (name, value) in services {
            guard let service = value as? [String: Any], let serviceImage = service["image"] as? String else {
                throw TestSetupError("service \(name) has no image")
            }
            var environment: [String: String] = [:]
            for (key, text) in service["environment"] as? [String: String] ?? [:] {
                environment[key] = try ContainerContractEndToEndTests.interpolate(text, variables)
            }
            var hardening: [String] = []
            if service["read_only"] as? Bool == true { hardening.append("--read-only") }
            for path in service["tmpfs"] as? [String] ?? [] { hardening += ["--tmpfs", path] }
            for capability in service["cap_drop"] as? [String] ?? [] { hardening += ["--cap-drop", capability] }
            for option in service["security_opt"] as? [String] ?? [] { hardening += ["--security-opt", option] }
            var healthcheck: [String]?
            if let test = (service["healthcheck"] as? [String: Any])?["test"] as? [String], test.first == "CMD" {
                healthcheck = Array(test.dropFirst())
            }
            let grace = (service["stop_grace_period"] as? String).flatMap { Int($0.dropLast()) }
            result[name] = Service(name: name, image: serviceImage, command: service["command"] as? [String] ?? [],
                                   environment: environment, hardening: hardening, healthcheck: healthcheck,
                                   stopGrace: grace, ports: service["ports"] as? [String] ?? [])
        }
        return result
    }

    /// podman with the project's configuration (`CONTAINERS_CONF`, from scripts/podman-env.sh).
    @discardableResult
    static func podman(_ arguments: [String], timeout: Duration = .seconds(120), check: Bool = true) async throws -> (status: Int32, output: String, error: String) {
        var environment: [String: String] = [:]
        if ProcessInfo.processInfo.environment["CONTAINERS_CONF"] == nil {
            environment["CONTAINERS_CONF"] = "\(try TestEnvironment.get().packageRoot)/.build/containers.conf"
        }
        let result = try await runCommand("/usr/bin/podman", arguments, environment: environment, timeout: timeout)
        if check && result.status != 0 {
            throw TestSetupError("podman \(arguments.prefix(3).joined(separator: " ")) … failed (\(result.status)): \(result.error)")
        }
        return result
    }

    /// Polls `check` every 250 ms until it holds or `timeout` passes.
    static func eventually(_ timeout: Duration, _ check: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await check() { return true }
            try await Task.sleep(for: .milliseconds(250))
        }
        return try await check()
    }

    /// A job as the gateway reports it, once it has ended (or the last answer after `timeout`).
    static func finishedJob(_ gateway: String, _ job: String, bearer: String, timeout: Duration = .seconds(180)) async throws -> JSONValue {
        var last: JSONValue = .null
        _ = try await eventually(timeout) {
            let answer = try await HTTP.request("GET", "\(gateway)/api/v1/jobs/\(job)", headers: ["Authorization": "Bearer \(bearer)"])
            last = (try? JSONParser().parse(Array(answer.body))) ?? .null
            return ["completed", "failed", "cancelled"].contains(last["status"]?.stringValue ?? "")
        }
        return last
    }

    /// Uploads `path` through the gateway; the job id.
    static func upload(_ path: String, gateway: String, bearer: String) async throws -> String {
        let upload = try await runCommand("/usr/bin/curl", [
            "-sS", "-H", "Authorization: Bearer \(bearer)", "-H", "Content-Type: application/x-ndjson",
            "--data-binary", "@\(path)", "\(gateway)/api/v1/ingest",
        ], timeout: .seconds(120))
        return try #require(try JSONParser().parse(Array(upload.output.utf8))["job_id"]?.stringValue, "\(upload.output) \(upload.error)")
    }

    /// A bearer token for the gateway the rendered files configure.
    static func token() async throws -> String {
        let environment = try TestEnvironment.get()
        let token = try await runCommand(environment.binary, ["token", "--subject", "image-e2e", "--roles", "ingest,analyst"],
                                         environment: ["SLUICE_JWT_SECRET": ContainerContractEndToEndTests.jwtSecret,
                                                       "SLUICE_JWT_ISSUER": ContainerContractEndToEndTests.issuer,
                                                       "SLUICE_JWT_AUDIENCE": ContainerContractEndToEndTests.audience])
        guard token.status == 0 else { throw TestSetupError("sluice token failed: \(token.error)") }
        return token.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func expectExact(_ job: JSONValue, _ workload: GeneratedWorkload, _ what: String) {
        #expect(job["status"]?.stringValue == "completed", "\(what): \(job.serializedString)")
        #expect(job.count("received") == workload.count, "\(what)")
        for name in ["loaded", "quarantined", "stale", "duplicate", "no_consent"] {
            #expect(job.count(name) == workload.expected[name], "\(what): counts.\(name)")
        }
    }

    @Test func everyFunctionRunsAsAContainerOfTheImage() async throws {
        let environment = try TestEnvironment.get()
        let functions = try ManifestLoader(functionsDirectory: "\(environment.packageRoot)/functions").functionNames()
        // The image: the non-root user, sluice as the entry point, the health check as the Dockerfile says.
        let config = try await Self.podman(["image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}", Self.image])
        #expect(config.output.trimmingCharacters(in: .whitespacesAndNewlines) == #"10001:10001 ["sluice"]"#, "\(config.output)")

        let services = try await Self.services(image: Self.image)
        let tag = String(UUID().uuidString.prefix(8)).lowercased()
        let network = "sluice-e2e-\(tag)"
        let directory = try makeTemporaryDirectory("image")
        var containers: [String] = []
        var opened: TestClients?
        func container(_ service: String) -> String { "sluice-e2e-\(tag)-\(service)" }
        /// `podman run -d` of a rendered service, as Compose would start it (published ports on free host ports).
        @discardableResult
        func start(_ service: Service, published: [Int: Int] = [:], detach: Bool = true) async throws -> (status: Int32, output: String, error: String) {
            let envFile = "\(directory)/\(service.name).env"
            try service.environment.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: "\n")
                .write(toFile: envFile, atomically: true, encoding: .utf8)
            var arguments = ["run", "--name", container(service.name), "--network", network, "--network-alias", service.name,
                             "--env-file", envFile] + service.hardening
            if detach { arguments.append("-d") }
            for (inside, outside) in published.sorted(by: { $0.key < $1.key }) { arguments += ["-p", "127.0.0.1:\(outside):\(inside)"] }
            if let grace = service.stopGrace { arguments += ["--stop-timeout", String(grace)] }
            containers.append(container(service.name))
            return try await Self.podman(arguments + [service.image] + service.command, timeout: .seconds(180), check: detach)
        }
        func logs(_ service: String) async -> String {
            (try? await Self.podman(["logs", "--tail", "15", container(service)], check: false)).map { $0.output + $0.error } ?? ""
        }

        let outcome: Result<Void, any Error>
        do {
            outcome = .success(try await {
                try await Self.podman(["network", "create", network])
                // The data stores, from the stand-in images, with their rendered commands and health checks.
                let redis = try #require(services["redis"]), postgres = try #require(services["postgres"])
                let postgresPort = freePort()
                try await start(redis)
                try await start(postgres, published: [5432: postgresPort])
                for store in [redis, postgres] {
                    let check = try #require(store.healthcheck)
                    let healthy = try await Self.eventually(.seconds(60)) {
                        try await Self.podman(["exec", container(store.name)] + check, check: false).status == 0
                    }
                    let log = healthy ? "" : await logs(store.name)
                    #expect(healthy, "\(store.name) never passed its health check: \(log)")
                }

                // The migration runs to completion; then every function, each its own container.
                let migrate = try #require(services["migrate"])
                #expect(migrate.image == Self.image && migrate.command == ["migrate", "--roles"])
                let migration = try await start(migrate, detach: false)
                #expect(migration.status == 0, "\(migration.output)\(migration.error)")
                let gatewayPort = freePort()
                for name in functions {
                    let service = try #require(services[name], "compose has no service \(name)")
                    #expect(service.image == Self.image && service.command == ["serve", name])
                    #expect(service.hardening == ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"],
                            "\(name): \(service.hardening)")
                    try await start(service, published: name == "gateway" ? [8080: gatewayPort] : [:])
                }
                // The image's HEALTHCHECK passes in every function's container…
                for name in functions {
                    let healthy = try await Self.eventually(.seconds(60)) {
                        try await Self.podman(["healthcheck", "run", container(name)], check: false).status == 0
                    }
                    let log = healthy ? "" : await logs(name)
                    #expect(healthy, "\(name)'s HEALTHCHECK never passed: \(log)")
                }
                // Every function ready (Redis, PostgreSQL, migrations), asked inside its container.
                for name in functions {
                    let ready = try await Self.eventually(.seconds(60)) {
                        try await Self.podman(["exec", container(name), "sluice", "health", "--path", "/health/ready"], check: false).status == 0
                    }
                    let log = ready ? "" : await logs(name)
                    #expect(ready, "\(name) never became ready: \(log)")
                }
                // The HEALTHCHECK fails where nothing answers.
                let idle = try await Self.podman(["run", "--rm", "--network", network, Self.image, "health"], check: false)
                #expect(idle.status == 1)
                #expect(idle.error.contains("no answer on 127.0.0.1:8080/health/live"), "\(idle.error)")
                let gateway = "http://127.0.0.1:\(gatewayPort)"
                #expect(try await Self.eventually(.seconds(30)) { (try? await HTTP.request("GET", "\(gateway)/health/ready").status) == 200 })

                // Every function runs as the image's user, on a read-only root file system, without capabilities.
                for name in functions {
                    let state = try await Self.podman(["inspect", "--format", "{{.State.Pid}} {{.HostConfig.ReadonlyRootfs}}", container(name)])
                    let fields = state.output.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                    #expect(fields.count == 2 && fields[1] == "true", "\(name): \(state.output)")
                    let status = try String(contentsOfFile: "/proc/\(fields[0])/status", encoding: .utf8)
                    let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(whereSeparator: { $0 == "\t" || $0 == " " })
                    #expect(uid.map { Array($0.dropFirst()) } == ["10001", "10001", "10001", "10001"], "\(name): \(String(describing: uid))")
                    let capabilities = status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }
                    #expect(capabilities?.hasSuffix("0000000000000000") == true, "\(name): \(String(describing: capabilities))")
                }

                // An upload through the gateway, followed to its end with the manifest's counts.
                let bearer = try await Self.token()
                let clients = try TestClients(environment: environment, db: 21,
                                              databaseURL: "postgres://sluice:\(Self.password)@127.0.0.1:\(postgresPort)/sluice")
                opened = clients
                let first = try await GeneratedWorkload.make(count: 3000, seed: 2301, format: "ndjson", in: directory)
                let firstJob = try await Self.upload(first.path, gateway: gateway, bearer: bearer)
                Self.expectExact(try await Self.finishedJob(gateway, firstJob, bearer: bearer), first, "first upload")
                #expect(try await clients.postgres.query("SELECT count(*) FROM events WHERE job_id = \(firstJob)::uuid").scalar
                        == String(first.expected["loaded"]!))

                // kill -9 of the load container while it loads, and its restart: nothing is lost or loaded twice.
                let second = try await GeneratedWorkload.make(count: 20_000, seed: 2302, format: "ndjson", in: directory)
                let secondJob = try await Self.upload(second.path, gateway: gateway, bearer: bearer)
                let loading = try await Self.eventually(.seconds(120)) {
                    let rows = try await clients.postgres.query("SELECT count(*) FROM events WHERE job_id = \(secondJob)::uuid").scalar
                    return Int(rows ?? "0") ?? 0 > 0
                }
                let loadLog = loading ? "" : await logs("load")
                #expect(loading, "load never started on the second upload: \(loadLog)")
                try await Self.podman(["kill", "--signal", "KILL", container("load")])
                let killed = try await Self.podman(["wait", container("load")], timeout: .seconds(30))
                #expect(killed.output.trimmingCharacters(in: .whitespacesAndNewlines) == "137")
                try await Self.podman(["start", container("load")])
                Self.expectExact(try await Self.finishedJob(gateway, secondJob, bearer: bearer, timeout: .seconds(300)), second, "upload across a kill -9 of load")
                #expect(try await clients.postgres.query("SELECT count(*) FROM events WHERE job_id = \(secondJob)::uuid").scalar
                        == String(second.expected["loaded"]!))

                // podman stop (SIGTERM) drains each function to exit 0 inside its grace period.
                for name in functions {
                    let grace = try #require(services[name]?.stopGrace)
                    let began = ContinuousClock.now
                    try await Self.podman(["stop", "--time", String(grace), container(name)], timeout: .seconds(Int64(grace) + 30))
                    let took = ContinuousClock.now - began
                    let exit = try await Self.podman(["inspect", "--format", "{{.State.ExitCode}}", container(name)])
                    let code = exit.output.trimmingCharacters(in: .whitespacesAndNewlines)
                    let log = code == "0" ? "" : await logs(name)
                    #expect(code == "0", "\(name) after SIGTERM: \(log)")
                    #expect(took < .seconds(grace), "\(name) took \(took) to stop (grace \(grace) s)")
                }
            }())
        } catch {
            outcome = .failure(error)
        }
        await opened?.shutdown()
        if !containers.isEmpty { _ = try? await Self.podman(["rm", "--force", "--time", "0"] + containers, check: false) }
        _ = try? await Self.podman(["network", "rm", "--force", network], check: false)
        try? FileManager.default.removeItem(atPath: directory)
        try outcome.get()
    }

    /// Whether nothing listens on `port` (the address Compose publishes on).
    static func portIsFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = INADDR_ANY
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    @Test func podmanComposeRunsTheRenderedFileAsItIs() async throws {
        let environment = try TestEnvironment.get()
        let root = environment.packageRoot
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw TestSetupError("SLUICE_PYTHON is not set: run the suite with `make test` (scripts/python-tools.sh installs podman-compose)")
        }
        let compose = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("podman-compose").path
        let file = "\(root)/infra/compose.yaml"
        guard let document = try Yams.load(yaml: try String(contentsOfFile: file, encoding: .utf8)) as? [String: Any],
              let all = (document["services"] as? [String: Any])?.keys.sorted() else { throw TestSetupError("\(file) has no services") }
        // Everything but Prometheus, whose image cannot be made here (and whose `configs:` podman-compose does not support).
        let services = all.filter { $0 != "prometheus" }
        #expect(services.count == all.count - 1)
        guard Self.portIsFree(8080) else { throw TestSetupError("port 8080, which compose.yaml publishes the gateway on, is in use") }
        let project = "sluice-e2e-\(String(UUID().uuidString.prefix(8)).lowercased())"
        var variables = Self.variables
        if ProcessInfo.processInfo.environment["CONTAINERS_CONF"] == nil { variables["CONTAINERS_CONF"] = "\(root)/.build/containers.conf" }
        func run(_ arguments: [String], timeout: Duration = .seconds(600)) async throws -> (status: Int32, output: String, error: String) {
            try await runCommand(compose, ["-f", file, "-p", project] + arguments, environment: variables, timeout: timeout)
        }
        let outcome: Result<Void, any Error>
        do {
            outcome = .success(try await {
                let up = try await run(["up", "-d"] + services)
                #expect(up.status == 0, "\(up.output.suffix(2000))\(up.error.suffix(2000))")
                let gateway = "http://127.0.0.1:8080"
                // Every service the file names is up, the migration done, and every function ready
                // (its own /health/ready, asked inside its container: the gateway's readiness says
                // nothing of ingest's, and podman < 4.6 starts them without waiting for health).
                var states: [String] = []
                let ready = try await Self.eventually(.seconds(180)) {
                    states = try await Self.podman(["ps", "--all", "--filter", "label=io.podman.compose.project=\(project)",
                                                    "--format", "{{.Names}}|{{.Image}}|{{.State}}|{{.ExitCode}}"]).output
                        .split(separator: "\n").map(String.init).sorted()
                    guard states.count == services.count else { return false }
                    for state in states {
                        let fields = state.split(separator: "|").map(String.init)
                        guard fields.count == 4 else { return false }
                        // podman 4.3 prints the state as its status text ("Up 3 seconds ago", "Exited (0) …").
                        let running = fields[2] == "running" || fields[2].hasPrefix("Up ")
                        if fields[0].contains("_migrate_") {
                            guard (fields[2] == "exited" || fields[2].hasPrefix("Exited (0)")) && fields[3] == "0" else { return false }
                        } else if fields[1].hasSuffix("/sluice:latest") {
                            guard running,
                                  try await Self.podman(["exec", fields[0], "sluice", "health", "--path", "/health/ready"], check: false).status == 0
                            else { return false }
                        } else if !running {
                            return false
                        }
                    }
                    return true
                }
                if !ready {
                    let logs = try await run(["logs", "--tail", "10"], timeout: .seconds(60))
                    Issue.record("the services never all became ready: \(states)\n\(logs.output.suffix(4000))")
                    return
                }
                #expect(try await HTTP.request("GET", "\(gateway)/health/ready").status == 200)

                let bearer = try await Self.token()
                let directory = try makeTemporaryDirectory("compose")
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let workload = try await GeneratedWorkload.make(count: 3000, seed: 2303, format: "ndjson", in: directory)
                let job = try await Self.upload(workload.path, gateway: gateway, bearer: bearer)
                Self.expectExact(try await Self.finishedJob(gateway, job, bearer: bearer), workload, "upload to compose up")
                // The rows are in the compose project's PostgreSQL.
                let postgres = try await Self.podman(["ps", "--filter", "label=io.podman.compose.project=\(project)",
                                                      "--filter", "label=com.docker.compose.service=postgres", "--format", "{{.Names}}"])
                let rows = try await Self.podman(["exec", postgres.output.trimmingCharacters(in: .whitespacesAndNewlines),
                                                  "psql", "-U", "sluice", "-d", "sluice", "-tAc", "SELECT count(*) FROM events WHERE job_id = '\(job)'"])
                #expect(rows.output.trimmingCharacters(in: .whitespacesAndNewlines) == String(workload.expected["loaded"]!))
            }())
        } catch {
            outcome = .failure(error)
        }
        let down = try await run(["down", "-v", "-t", "10"], timeout: .seconds(300))
        #expect(down.status == 0, "\(down.error.suffix(2000))")
        try outcome.get()
    }
}
