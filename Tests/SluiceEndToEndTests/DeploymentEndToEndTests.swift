import Foundation
import Sluice
import Testing
import Yams

/// What operators deploy: `sluice render`'s output is what `infra/` holds, passes the
/// Kubernetes, KEDA and Compose schemas offline, the Dockerfile passes hadolint, and every
/// function runs as its container would.
@Suite(.serialized) struct DeploymentEndToEndTests {
    static func render(_ target: String, image: String? = nil, functions: String? = nil) async throws -> (status: Int32, output: String, error: String) {
        let environment = try TestEnvironment.get()
        return try await runCommand(environment.binary, ["render", target] + (image.map { ["--image", $0] } ?? []),
                                    environment: ["SLUICE_FUNCTIONS_DIR": functions ?? "\(environment.packageRoot)/functions"])
    }

    static func python() throws -> String {
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw TestSetupError("SLUICE_PYTHON is not set: make test installs the Python tools (scripts/python-tools.sh)")
        }
        return python
    }

    /// Runs Tests/tools/validate_deploy.py on `text`; answers its status and output lines.
    static func validate(_ kind: String, _ text: String) async throws -> (status: Int32, lines: [String]) {
        let root = try TestEnvironment.get().packageRoot
        let directory = try makeTemporaryDirectory("deploy")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try text.write(toFile: "\(directory)/\(kind).yaml", atomically: true, encoding: .utf8)
        let result = try await runCommand(try python(), [
            "\(root)/Tests/tools/validate_deploy.py", kind, "\(directory)/\(kind).yaml", "--schemas", "\(root)/../shared/schemas",
        ])
        #expect(result.error.isEmpty || result.status != 0, "\(result.error)")
        return (result.status, result.output.split(separator: "\n").map(String.init))
    }

    @Test func infraIsWhatRenderPrintsToday() async throws {
        let root = try TestEnvironment.get().packageRoot
        for (target, file) in [("k8s", "infra/k8s.yaml"), ("compose", "infra/compose.yaml")] {
            let rendered = try await Self.render(target)
            #expect(rendered.status == 0, "\(rendered.error)")
            let committed = try String(contentsOfFile: "\(root)/\(file)", encoding: .utf8)
            #expect(rendered.output == committed, "\(file) is out of date with functions/: run `make render` and commit it")
        }
    }

    @Test func everyRenderedObjectPassesTheOfflineSchemas() async throws {
        let k8s = try await Self.render("k8s", image: "registry.example.com/data/sluice:1.4.2")
        #expect(k8s.status == 0, "\(k8s.error)")
        let documents = try Yams.load_all(yaml: k8s.output).compactMap { $0 as? [String: Any] }
        let checked = try await Self.validate("k8s", k8s.output)
        #expect(checked.status == 0, "\(checked.lines.filter { $0.hasPrefix("error") })")
        #expect(checked.lines.count == documents.count && checked.lines.allSatisfy { $0.hasPrefix("ok ") }, "\(checked.lines)")

        // Every function has its Deployment; every stream function its ScaledObject; every HTTP function its Service.
        let manifests = try ManifestLoader(functionsDirectory: "\(try TestEnvironment.get().packageRoot)/functions").loadAll()
        #expect(manifests.count == 12)
        for manifest in manifests {
            #expect(checked.lines.contains("ok Deployment/sluice-\(manifest.name)"), "\(manifest.name)")
            #expect(checked.lines.contains("ok PodDisruptionBudget/sluice-\(manifest.name)"), "\(manifest.name)")
            #expect(checked.lines.contains("ok ScaledObject/sluice-\(manifest.name)") == (manifest.inputStream != nil), "\(manifest.name)")
            #expect(checked.lines.contains("ok Service/sluice-\(manifest.name)") == manifest.servesHTTP, "\(manifest.name)")
        }
        for name in ["ok HorizontalPodAutoscaler/sluice-gateway", "ok Job/sluice-migrate", "ok ConfigMap/sluice-config",
                     "ok ConfigMap/sluice-prometheus", "ok TriggerAuthentication/sluice-redis"] {
            #expect(checked.lines.contains(name), "\(name)")
        }
        let images = Set(documents.compactMap { document -> [String]? in
            guard let spec = (document["spec"] as? [String: Any])?["template"] as? [String: Any],
                  let containers = (spec["spec"] as? [String: Any])?["containers"] as? [[String: Any]] else { return nil }
            return containers.compactMap { $0["image"] as? String }
        }.joined())
        #expect(images == ["registry.example.com/data/sluice:1.4.2"])

        let compose = try await Self.render("compose", image: "registry.example.com/data/sluice:1.4.2")
        #expect(compose.status == 0, "\(compose.error)")
        let composeChecked = try await Self.validate("compose", compose.output)
        #expect(composeChecked.status == 0, "\(composeChecked.lines)")
        #expect(composeChecked.lines.sorted() == (manifests.map(\.name) + ["redis", "postgres", "migrate", "prometheus"]).map { "ok service/\($0)" }.sorted())
    }

    /// The shipped functions plus examples/python-score (http) and examples/python-lambda
    /// (lambda), in a folder of their own.
    static func functionsWithSidecars() throws -> String {
        let root = try TestEnvironment.get().packageRoot
        let directory = try makeTemporaryDirectory("render-sidecars") + "/functions"
        try FileManager.default.copyItem(atPath: "\(root)/functions", toPath: directory)
        try FileManager.default.copyItem(atPath: "\(root)/examples/python-score", toPath: "\(directory)/score")
        try FileManager.default.copyItem(atPath: "\(root)/examples/python-lambda", toPath: "\(directory)/review")
        return directory
    }

    /// Functions in other languages get their own Deployment, like the built-ins (probes, KEDA
    /// on their stream, a disruption budget), with their process as a second container of the
    /// pod from its own image; in Compose, a second service in the first one's network. Every
    /// object passes the offline schemas.
    @Test func functionsInOtherLanguagesGetTheirProcessBesideSluice() async throws {
        let functions = try Self.functionsWithSidecars()
        let k8s = try await Self.render("k8s", image: "registry.example.com/data/sluice:1.4.2", functions: functions)
        #expect(k8s.status == 0, "\(k8s.error)")
        let checked = try await Self.validate("k8s", k8s.output)
        #expect(checked.status == 0, "\(checked.lines.filter { $0.hasPrefix("error") })")
        for name in ["score", "review"] {
            for kind in ["Deployment", "ScaledObject", "PodDisruptionBudget"] {
                #expect(checked.lines.contains("ok \(kind)/sluice-\(name)"), "\(kind)/sluice-\(name)")
            }
        }
        let documents = try Yams.load_all(yaml: k8s.output).compactMap { $0 as? [String: Any] }
        func containers(_ name: String) -> [[String: Any]] {
            let deployment = documents.first { $0["kind"] as? String == "Deployment" && ($0["metadata"] as? [String: Any])?["name"] as? String == "sluice-\(name)" }
            let template = (deployment?["spec"] as? [String: Any])?["template"] as? [String: Any]
            return ((template?["spec"] as? [String: Any])?["containers"] as? [[String: Any]]) ?? []
        }
        func environment(_ container: [String: Any]) -> [String: String] {
            var result: [String: String] = [:]
            for entry in container["env"] as? [[String: Any]] ?? [] {
                let name = entry["name"] as? String ?? ""
                if let value = entry["value"] as? String { result[name] = value }
                if let ref = (entry["valueFrom"] as? [String: Any])?["secretKeyRef"] as? [String: Any] {
                    result[name] = "secret \(ref["name"] as? String ?? "")/\(ref["key"] as? String ?? "")"
                }
            }
            return result
        }
        let score = containers("score")
        #expect(score.map { $0["name"] as? String } == ["score", "function"])
        #expect(score.first?["image"] as? String == "registry.example.com/data/sluice:1.4.2")
        #expect(score.last?["image"] as? String == "sluice-function-score:latest")
        #expect(score.last?["command"] as? [String] == ["python3", "handler.py"])
        #expect(environment(score[0])["SLUICE_FUNCTION_URL"] == "http://127.0.0.1:9101")
        #expect(environment(score[0])["SLUICE_FUNCTION_TOKEN"] == "secret sluice-function-tokens/score")
        #expect(environment(score[1])["PORT"] == "9101")
        #expect(environment(score[1])["SLUICE_FUNCTION_TOKEN"] == "secret sluice-function-tokens/score")
        #expect(((score[1]["readinessProbe"] as? [String: Any])?["tcpSocket"] as? [String: Any])?["port"] as? String == "function")
        let review = containers("review")
        #expect(review.map { $0["name"] as? String } == ["review", "function"])
        #expect(environment(review[0])["SLUICE_LAMBDA_API_PORT"] == "9001")
        #expect(environment(review[1])["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001")
        #expect(environment(review[1])["SLUICE_FUNCTION_TOKEN"] == nil)
        // The built-ins are as they were: one container.
        #expect(containers("validate").count == 1)

        let compose = try await Self.render("compose", functions: functions)
        #expect(compose.status == 0, "\(compose.error)")
        let composeChecked = try await Self.validate("compose", compose.output)
        #expect(composeChecked.status == 0, "\(composeChecked.lines)")
        for name in ["score", "score-process", "review", "review-process"] {
            #expect(composeChecked.lines.contains("ok service/\(name)"), "\(name)")
        }
        let document = try #require(try Yams.load(yaml: compose.output) as? [String: Any])
        let services = try #require(document["services"] as? [String: Any])
        let process = try #require(services["score-process"] as? [String: Any])
        #expect(process["network_mode"] as? String == "service:score")
        #expect(process["image"] as? String == "sluice-function-score:latest")
        let variables = try #require(process["environment"] as? [String: Any])
        #expect(variables["SLUICE_FUNCTION_TOKEN"] as? String == "${SLUICE_FUNCTION_TOKEN_SCORE:?set SLUICE_FUNCTION_TOKEN_SCORE (16 or more random characters)}")
        #expect(((services["score"] as? [String: Any])?["environment"] as? [String: Any])?["SLUICE_FUNCTION_URL"] as? String == "http://127.0.0.1:9101")
    }

    /// The validation can fail: a wrong field in each kind of file is reported, naming the object.
    @Test func theValidatorRefusesBrokenObjects() async throws {
        let k8s = try await Self.render("k8s").output
        let cases: [(String, String, String)] = [
            ("terminationGracePeriodSeconds: 40", "terminationGracePeriod: 40", "error Deployment/sluice-calls: spec/template/spec: "),
            ("minReplicaCount: 1\n", "minReplicaCount: one\n", "error ScaledObject/sluice-enrich: spec/minReplicaCount: "),
            ("  secretTargetRef:", "  secretTargetRefs:", "error TriggerAuthentication/sluice-redis: spec: "),
            ("maxUnavailable: 1\n  selector", "maxUnavailable: 1\n  selectr", "error PodDisruptionBudget/sluice-calls: spec: "),
        ]
        for (of, with, expected) in cases {
            let range = try #require(k8s.range(of: of), "\(of)")
            let broken = k8s.replacingCharacters(in: range, with: with)
            let checked = try await Self.validate("k8s", broken)
            #expect(checked.status == 1)
            #expect(checked.lines.filter { $0.hasPrefix("error") }.count == 1, "\(checked.lines.filter { $0.hasPrefix("error") })")
            #expect(checked.lines.contains { $0.hasPrefix(expected) }, "\(expected) in \(checked.lines.filter { $0.hasPrefix("error") })")
        }
        let compose = try await Self.render("compose").output
        let broken = compose.replacingOccurrences(of: "    restart: on-failure\n", with: "    restart: on-failure\n    restarts: 3\n")
        #expect(broken != compose)
        let checked = try await Self.validate("compose", broken)
        #expect(checked.status == 1)
        #expect(checked.lines == ["error compose: services/migrate: 'restarts' does not match any of the regexes: '^x-'"])
    }

    @Test func theDockerfilePassesHadolint() async throws {
        let root = try TestEnvironment.get().packageRoot
        let hadolint = URL(fileURLWithPath: try Self.python()).deletingLastPathComponent().appendingPathComponent("hadolint").path
        let clean = try await runCommand(hadolint, ["\(root)/Dockerfile"])
        #expect(clean.status == 0, "\(clean.output)\(clean.error)")
        #expect(clean.output.isEmpty)
        // The check can fail: a Dockerfile with the usual mistakes is refused.
        let directory = try makeTemporaryDirectory("hadolint")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "FROM debian:latest\nRUN apt-get install curl\nCMD sluice\n".write(toFile: "\(directory)/Dockerfile", atomically: true, encoding: .utf8)
        let dirty = try await runCommand(hadolint, ["--no-color", "\(directory)/Dockerfile"])
        #expect(dirty.status == 1)
        #expect(dirty.output.contains("DL3007") && dirty.output.contains("DL3025"), "\(dirty.output)")
        // The image runs as a non-root user, its entry point is sluice and it checks itself.
        let dockerfile = try String(contentsOfFile: "\(root)/Dockerfile", encoding: .utf8)
        #expect(dockerfile.contains("\nUSER 10001:10001\n"))
        #expect(dockerfile.contains(#"ENTRYPOINT ["sluice"]"#))
        #expect(dockerfile.contains(#"CMD ["sluice", "health", "--port", "8080", "--path", "/health/live"]"#))
    }

    @Test func renderRefusesWhatItCannotRender() async throws {
        let unknown = try await Self.render("helm")
        #expect(unknown.status == 64)
        #expect(unknown.error.contains("'helm'") && unknown.error.contains("k8s") && unknown.error.contains("compose"), "\(unknown.error)")
        let spaced = try await Self.render("k8s", image: "my image")
        #expect(spaced.status == 64)
        #expect(spaced.error.contains("--image must be an image reference without spaces"), "\(spaced.error)")
        // A broken manifest is named, not rendered around.
        let directory = try makeTemporaryDirectory("render")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: "\(directory)/f", withIntermediateDirectories: true)
        try "handler: h\ntriggers: [{http: {}}]\ndeploy: {replicas: {min: 0}}\n".write(toFile: "\(directory)/f/function.yaml", atomically: true, encoding: .utf8)
        let bad = try await Self.render("k8s", functions: directory)
        #expect(bad.status == 1)
        #expect(bad.output.isEmpty)
        #expect(bad.error.contains("f/function.yaml: deploy.replicas.min: must be at least 1 for a function without a stream trigger"), "\(bad.error)")
    }
}
