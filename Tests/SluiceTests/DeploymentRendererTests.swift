import Testing
import Yams
@testable import Sluice

@Suite("Deployment manifests")
struct DeploymentRendererTests {
    func parse(_ text: String, name: String) throws -> Manifest {
        try ManifestLoader.parse(text, name: name, file: "functions/\(name)/function.yaml")
    }

    /// A gateway, an HTTP function, and two stream functions reading the same stream.
    func functions() throws -> [Manifest] {
        [
            try parse("""
                handler: gateway
                triggers: [{http: {}}]
                deploy: {replicas: {min: 2, max: 10}, cpu_utilization: 60}
                """, name: "gateway"),
            try parse("""
                handler: ingest
                triggers: [{http: {}}]
                outputs: [validate]
                """, name: "ingest"),
            try parse("""
                handler: validate
                triggers: [{stream: validate}]
                deploy:
                  replicas: {min: 0, max: 6}
                  lag_count: 12
                  resources: {requests: {cpu: 250m, memory: 100Mi}, limits: {cpu: "2", memory: 1Gi}}
                """, name: "validate"),
            try parse("""
                handler: notify
                triggers: [{stream: jobs}]
                """, name: "notify"),
        ]
    }

    func objects(_ kind: String, in objects: [YAMLValue]) -> [String: YAMLValue] {
        var found: [String: YAMLValue] = [:]
        for object in objects where object["kind"] == .string(kind) {
            if case .string(let name)? = object["metadata"]?["name"] { found[name] = object }
        }
        return found
    }

    @Test func everyFunctionHasADeploymentWithProbesAndTheImage() throws {
        let rendered = DeploymentRenderer(manifests: try functions(), image: "registry.example.com/sluice:1.2.3").kubernetesObjects()
        let deployments = objects("Deployment", in: rendered)
        #expect(deployments.keys.sorted() == ["sluice-gateway", "sluice-ingest", "sluice-notify", "sluice-validate"])
        for (name, deployment) in deployments {
            let function = String(name.dropFirst("sluice-".count))
            let pod = try #require(deployment["spec"]?["template"]?["spec"])
            guard case .list(let containers)? = pod["containers"] else { Issue.record("\(name) has no containers"); continue }
            #expect(containers.count == 1)
            let container = containers[0]
            #expect(container["image"] == "registry.example.com/sluice:1.2.3")
            #expect(container["args"] == .list(["serve", .string(function)]))
            #expect(container["readinessProbe"]?["httpGet"]?["path"] == "/health/ready")
            #expect(container["livenessProbe"]?["httpGet"]?["path"] == "/health/live")
            #expect(container["ports"] == [["name": "http", "containerPort": 8080, "protocol": "TCP"]])
            // The grace period outlasts the runtime's drain (and, for HTTP functions, the pre-stop pause).
            guard case .int(let grace)? = pod["terminationGracePeriodSeconds"] else { Issue.record("\(name) has no grace period"); continue }
            let pause = function == "gateway" || function == "ingest" ? DeploymentRenderer.preStopSeconds : 0
            #expect(grace > Int(DeploySettings.drainLimit.components.seconds) + pause)
            // Replicas are left to KEDA or the HPA.
            #expect(deployment["spec"]?["replicas"] == nil)
        }
        let validate = try #require(deployments["sluice-validate"]?["spec"]?["template"]?["spec"]?["containers"])
        guard case .list(let containers) = validate else { Issue.record("no containers"); return }
        #expect(containers[0]["resources"] == [
            "requests": ["cpu": "250m", "memory": "100Mi"], "limits": ["cpu": "2", "memory": "1Gi"],
        ])
    }

    @Test func streamFunctionsScaleOnTheirOwnStreamAndGroup() throws {
        let rendered = DeploymentRenderer(manifests: try functions()).kubernetesObjects()
        let scaled = objects("ScaledObject", in: rendered)
        #expect(scaled.keys.sorted() == ["sluice-notify", "sluice-validate"])
        let validate = try #require(scaled["sluice-validate"]?["spec"])
        #expect(validate["scaleTargetRef"]?["name"] == "sluice-validate")
        #expect(validate["minReplicaCount"] == 0)
        #expect(validate["maxReplicaCount"] == 6)
        #expect(validate["triggers"] == [[
            "type": "redis-streams",
            "metadata": [
                "addressFromEnv": "SLUICE_REDIS_ADDRESS", "stream": "{sluice}:stream:validate",
                "consumerGroup": "validate", "lagCount": "12", "databaseIndex": "0",
            ],
            "authenticationRef": ["name": "sluice-redis"],
        ]])
        // notify reads the jobs stream with a group of its own.
        guard case .list(let triggers)? = scaled["sluice-notify"]?["spec"]?["triggers"] else { Issue.record("no triggers"); return }
        #expect(triggers[0]["metadata"]?["stream"] == "{sluice}:stream:jobs")
        #expect(triggers[0]["metadata"]?["consumerGroup"] == "notify")
        #expect(triggers[0]["metadata"]?["lagCount"] == "10")
    }

    @Test func httpFunctionsGetAServiceAndAnAutoscaler() throws {
        let rendered = DeploymentRenderer(manifests: try functions()).kubernetesObjects()
        #expect(objects("Service", in: rendered).keys.sorted() == ["sluice-gateway", "sluice-ingest"])
        let hpa = try #require(objects("HorizontalPodAutoscaler", in: rendered)["sluice-gateway"]?["spec"])
        #expect(hpa["minReplicas"] == 2)
        #expect(hpa["maxReplicas"] == 10)
        #expect(hpa["metrics"] == [["type": "Resource", "resource": ["name": "cpu", "target": ["type": "Utilization", "averageUtilization": 60]]]])
        #expect(objects("PodDisruptionBudget", in: rendered).count == 4)
        #expect(objects("Job", in: rendered)["sluice-migrate"] != nil)
        // The gateway finds every other HTTP function through the ConfigMap.
        let config = try #require(objects("ConfigMap", in: rendered)["sluice-config"]?["data"])
        #expect(config["SLUICE_UPSTREAM_INGEST"] == "http://sluice-ingest:8080")
        #expect(config["SLUICE_UPSTREAM_GATEWAY"] == nil)
    }

    @Test func composeNamesEveryFunctionWithTheSameCommand() throws {
        let text = DeploymentRenderer(manifests: try functions(), image: "sluice:test").compose()
        let document = try #require(try Yams.load(yaml: text) as? [String: Any])
        let services = try #require(document["services"] as? [String: Any])
        #expect(services.keys.sorted() == ["gateway", "ingest", "migrate", "notify", "postgres", "prometheus", "redis", "validate"])
        for name in ["gateway", "ingest", "notify", "validate"] {
            let service = try #require(services[name] as? [String: Any])
            #expect(service["image"] as? String == "sluice:test")
            #expect(service["command"] as? [String] == ["serve", name])
        }
        let redis = try #require(services["redis"] as? [String: Any])
        #expect(redis["command"] as? [String] == ["redis-server", "--appendonly", "yes", "--appendfsync", "always"])
        let gateway = try #require(services["gateway"] as? [String: Any])
        #expect(gateway["ports"] as? [String] == ["8080:8080"])
        let environment = try #require(gateway["environment"] as? [String: String])
        #expect(environment["SLUICE_UPSTREAM_INGEST"] == "http://ingest:8080")
        #expect(environment["SLUICE_REDIS_URL"] == "redis://redis:6379/0")
    }

    @Test func yamlScalarsReadBackAsTheSameStrings() throws {
        let tricky = ["1", "0.5", "1e3", "0x1F", "true", "on", "No", "null", "~", "", "-1", "a: b", "key:value",
                      "#x", "${X:-}", "{sluice}:stream:a", "it's \"quoted\"", "tab\there", "é", "*", "&a", "!tag", "@x", "`x`",
                      "%x", "line one\nline two\n", "no trailing\nnewline", "-", "- x", "? x", "|", ">"]
        let document: YAMLValue = .map(tricky.enumerated().map { ("k\($0.offset)", .string($0.element)) }
            + [("list", .list(tricky.map { .string($0) }))])
        let text = YAMLDocument.render([document])
        let loaded = try #require(try Yams.load(yaml: text) as? [String: Any], "\(text)")
        for (index, value) in tricky.enumerated() {
            #expect(loaded["k\(index)"] as? String == value, "\(value) came back as \(String(describing: loaded["k\(index)"]))")
        }
        #expect(loaded["list"] as? [String] == tricky)
    }

    @Test func deploySectionErrorsNameTheKey() throws {
        func failure(_ deploy: String, trigger: String = "{stream: s}") -> ManifestError? {
            do {
                _ = try parse("handler: h\ntriggers: [\(trigger)]\ndeploy: \(deploy)", name: "h")
            } catch let error as ManifestError {
                return error
            } catch {}
            return nil
        }
        #expect(failure("{replicas: {min: 0}}", trigger: "{http: {}}")?.key == "deploy.replicas.min")
        #expect(failure("{replicas: {min: 3, max: 2}}")?.key == "deploy.replicas.max")
        #expect(failure("{replicas: {min: -1}}")?.key == "deploy.replicas.min")
        #expect(failure("{lag_count: 0}")?.key == "deploy.lag_count")
        #expect(failure("{cpu_utilization: 120}")?.key == "deploy.cpu_utilization")
        #expect(failure("{resources: {limits: {memory: lots}}}")?.key == "deploy.resources.limits.memory")
        #expect(failure("{resources: {limits: {gpu: 1}}}")?.code == .unknownKey)
        #expect(failure("{replica: {min: 1}}")?.code == .unknownKey)
        let defaults = try parse("handler: h\ntriggers: [{stream: s}]", name: "h").deploy
        #expect(defaults == DeploySettings())
        #expect(DeploySettings.isQuantity("1.5") && DeploySettings.isQuantity("250m") && DeploySettings.isQuantity("512Mi"))
        #expect(!DeploySettings.isQuantity("1.") && !DeploySettings.isQuantity("Mi") && !DeploySettings.isQuantity("1 Gi"))
    }
}
