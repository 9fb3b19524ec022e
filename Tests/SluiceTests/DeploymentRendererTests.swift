import Foundation
import Testing
import Yams
@testable import Sluice
@testable import SluiceDeploy

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
            #expect(container["ports"] == [["name": "http", "containerPort": 8080, "protocol": "TCP"],
                                           ["name": "metrics", "containerPort": 9090, "protocol": "TCP"]])
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

    /// The functions of the repository's manifests, as `sluice render` reads them.
    func shipped() throws -> [Manifest] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        return try ManifestLoader(functionsDirectory: "\(root)/functions").loadAll()
    }

    /// The Secrets each Deployment's container takes, by function.
    func secretsByFunction(_ rendered: [YAMLValue]) throws -> [String: Set<String>] {
        var result: [String: Set<String>] = [:]
        for (name, deployment) in objects("Deployment", in: rendered) {
            guard case .list(let containers)? = deployment["spec"]?["template"]?["spec"]?["containers"],
                  case .list(let sources)? = containers.first?["envFrom"] else { Issue.record("\(name): no envFrom"); continue }
            var secrets = Set<String>()
            for source in sources { if case .string(let secret)? = source["secretRef"]?["name"] { secrets.insert(secret) } }
            if case .list(let variables)? = containers.first?["env"] {
                for variable in variables {
                    if case .string(let secret)? = variable["valueFrom"]?["secretKeyRef"]?["name"] { secrets.insert("\(secret)#\(variable["name"].map { "\($0)" } ?? "")") }
                }
            }
            result[String(name.dropFirst("sluice-".count))] = secrets
        }
        return result
    }

    @Test func eachPodHoldsOnlyTheSecretsItNeeds() throws {
        let rendered = DeploymentRenderer(manifests: try shipped()).kubernetesObjects()
        let secrets = try secretsByFunction(rendered)
        func base(_ name: String) -> Set<String> { ["sluice-datastores", "sluice-caller-key", "sluice-db-\(name)"] }
        #expect(secrets["gateway"] == ["sluice-datastores", "sluice-gateway", "sluice-db-gateway"])
        #expect(secrets["validate"] == base("validate").union(["sluice-pseudonym"]))
        #expect(secrets["quarantine"] == base("quarantine").union(["sluice-pseudonym"]))
        #expect(secrets["privacy"] == base("privacy").union(["sluice-pseudonym"]))
        #expect(secrets["warehouse"] == base("warehouse").union(["sluice-pseudonym"]))
        #expect(secrets["calls"] == base("calls").union(["sluice-pseudonym", "sluice-delivery"]))
        #expect(secrets["notify"] == base("notify").union(["sluice-delivery"]))
        #expect(secrets["ingest"]?.contains("sluice-pseudonym") == true)
        #expect(secrets["ingest"]?.contains("sluice-delivery") == false, "ingest takes one key of it, not the signing secret")
        for name in ["enrich", "transform", "load", "jobs"] { #expect(secrets[name] == base(name), "\(name)") }
        // Only the gateway holds what verifies tokens and signs assertions.
        for (name, held) in secrets where name != "gateway" { #expect(!held.contains("sluice-gateway"), "\(name)") }
        // Each function holds its own database role's credentials and no other's; none holds the owner's.
        for (name, held) in secrets {
            #expect(held.filter { $0.hasPrefix("sluice-db") || $0.hasPrefix("sluice-database") } == ["sluice-db-\(name)"], "\(name)")
        }
        // The migration holds the owner's credentials, and every role's password, to set them.
        guard case .list(let containers)? = objects("Job", in: rendered)["sluice-migrate"]?["spec"]?["template"]?["spec"]?["containers"] else {
            Issue.record("no migration"); return
        }
        #expect(containers[0]["envFrom"] == [["configMapRef": ["name": "sluice-config"]], ["secretRef": ["name": "sluice-database"]]])
        #expect(containers[0]["args"] == ["migrate", "--roles"])
        guard case .list(let passwords)? = containers[0]["env"] else { Issue.record("no role passwords"); return }
        #expect(passwords.count == secrets.count)
        #expect(passwords.contains(["name": "SLUICE_ROLE_PASSWORD_ENRICH", "valueFrom": ["secretKeyRef": [
            "name": "sluice-db-enrich", "key": "SLUICE_DATABASE_PASSWORD", "optional": true]]]))
        // The gateway refuses to start without an issuer and audience to check.
        guard case .list(let gateway)? = objects("Deployment", in: rendered)["sluice-gateway"]?["spec"]?["template"]?["spec"]?["containers"] else { return }
        #expect(gateway[0]["env"] == [["name": "SLUICE_JWT_REQUIRE_ISSUER_AUDIENCE", "value": "true"]])
        // KEDA reads Redis' password from the datastores Secret.
        #expect(objects("TriggerAuthentication", in: rendered)["sluice-redis"]?["spec"]?["secretTargetRef"]
                == [["parameter": "password", "name": "sluice-datastores", "key": "SLUICE_REDIS_PASSWORD"]])
    }

    @Test func networkPoliciesLetOnlyTheGatewayReachTheFunctions() throws {
        let rendered = DeploymentRenderer(manifests: try shipped()).kubernetesObjects()
        let policies = objects("NetworkPolicy", in: rendered)
        let deny = try #require(policies["sluice-default-deny"]?["spec"])
        #expect(deny["podSelector"] == ["matchLabels": ["app.kubernetes.io/part-of": "sluice"]])
        #expect(deny["policyTypes"] == ["Ingress", "Egress"])
        #expect(deny["ingress"] == nil && deny["egress"] == nil)
        // Published: the gateway alone, from anywhere, on its HTTP port.
        #expect(policies["sluice-gateway-ingress"]?["spec"]?["ingress"] == [["ports": [["protocol": "TCP", "port": 8080]]]])
        for name in ["ingest", "warehouse", "calls", "privacy"] {
            #expect(policies["sluice-\(name)-ingress"]?["spec"]?["ingress"] == [[
                "from": [["podSelector": ["matchLabels": ["app.kubernetes.io/name": "sluice", "app.kubernetes.io/component": "gateway"]]]],
                "ports": [["protocol": "TCP", "port": 8080]],
            ]], "\(name)")
        }
        // Stream functions take no traffic but the metrics scrape; nothing takes /metrics but Prometheus.
        for name in ["validate", "enrich", "transform", "load", "quarantine", "jobs", "notify"] { #expect(policies["sluice-\(name)-ingress"] == nil) }
        #expect(policies["sluice-metrics"]?["spec"]?["ingress"] == [[
            "from": [["namespaceSelector": [:], "podSelector": ["matchLabels": ["app.kubernetes.io/name": "prometheus"]]]],
            "ports": [["protocol": "TCP", "port": 9090]],
        ]])
        // The outside is reached by notify and calls only, never a private range.
        let outbound = policies.keys.filter { $0.hasSuffix("-egress") && $0 != "sluice-gateway-egress" }.sorted()
        #expect(outbound == ["sluice-calls-egress", "sluice-notify-egress"])
        guard case .list(let rules)? = policies["sluice-notify-egress"]?["spec"]?["egress"],
              case .list(let blocks)? = rules.first?["to"] else { Issue.record("no egress rule"); return }
        #expect(blocks.first?["ipBlock"]?["except"].map { "\($0)" }?.contains("10.0.0.0/8") == true)
        // /metrics is announced on its own port, which the ConfigMap sets for every process.
        #expect(objects("ConfigMap", in: rendered)["sluice-config"]?["data"]?["SLUICE_METRICS_PORT"] == "9090")
    }

    /// Finding 12: no policy lets a pod reach Redis' or PostgreSQL's port at any address; only
    /// the data stores' pods (labels the operator may set) or the ranges the operator names.
    @Test func datastoresAreReachableOnlyAtTheirPodsOrAddresses() throws {
        func egressRules(_ renderer: DeploymentRenderer) -> [YAMLValue] {
            objects("NetworkPolicy", in: renderer.kubernetesObjects()).values.flatMap { policy -> [YAMLValue] in
                if case .list(let rules)? = policy["spec"]?["egress"] { return rules }
                return []
            }
        }
        func ports(_ rule: YAMLValue) -> [Int] {
            guard case .list(let ports)? = rule["ports"] else { return [] }
            return ports.compactMap { if case .int(let port)? = $0["port"] { port } else { nil } }
        }
        var custom = DeploymentRenderer(manifests: try shipped())
        custom.datastores = DatastorePeers(redis: .pods(labels: ["app": "cache"], namespace: "data"),
                                           postgres: .addresses(["10.0.3.7/32", "fd00::5/128"]))
        for renderer in [DeploymentRenderer(manifests: try shipped()), custom] {
            let rules = egressRules(renderer)
            let datastoreRules = rules.filter { !Set(ports($0)).isDisjoint(with: [6379, 5432]) }
            #expect(datastoreRules.count == 2)
            for rule in datastoreRules {
                // A rule without `to` allows every address; so would a range of every address.
                guard case .list(let peers)? = rule["to"] else { Issue.record("a rule for \(ports(rule)) allows any address"); continue }
                #expect(!peers.isEmpty)
                for peer in peers {
                    #expect(peer["podSelector"] != nil || peer["ipBlock"] != nil, "\(peer)")
                    if case .string(let cidr)? = peer["ipBlock"]?["cidr"] { #expect(!cidr.hasSuffix("/0"), "\(cidr)") }
                    if let selector = peer["podSelector"] { #expect(selector != ["matchLabels": [:]] && selector != [:], "an empty selector is every pod") }
                }
                #expect(ports(rule).count == 1, "one data store per rule")
            }
            // The outside rules of notify, calls and the gateway never open the data stores' ports.
            for rule in rules where String(describing: rule["to"]).contains("0.0.0.0/0") {
                #expect(Set(ports(rule)).isDisjoint(with: [6379, 5432]))
            }
        }
        let defaults = objects("NetworkPolicy", in: DeploymentRenderer(manifests: try shipped()).kubernetesObjects())["sluice-datastores"]?["spec"]?["egress"]
        #expect(defaults == [
            ["ports": [["protocol": "UDP", "port": 53], ["protocol": "TCP", "port": 53]]],
            ["to": [["podSelector": ["matchLabels": ["app.kubernetes.io/name": "redis"]]]], "ports": [["protocol": "TCP", "port": 6379]]],
            ["to": [["podSelector": ["matchLabels": ["app.kubernetes.io/name": "postgresql"]]]], "ports": [["protocol": "TCP", "port": 5432]]],
        ])
        let named = objects("NetworkPolicy", in: custom.kubernetesObjects())["sluice-datastores"]?["spec"]?["egress"]
        #expect(named == [
            ["ports": [["protocol": "UDP", "port": 53], ["protocol": "TCP", "port": 53]]],
            ["to": [["namespaceSelector": ["matchLabels": ["kubernetes.io/metadata.name": "data"]], "podSelector": ["matchLabels": ["app": "cache"]]]],
             "ports": [["protocol": "TCP", "port": 6379]]],
            ["to": [["ipBlock": ["cidr": "10.0.3.7/32"]], ["ipBlock": ["cidr": "fd00::5/128"]]], "ports": [["protocol": "TCP", "port": 5432]]],
        ])
        // What an operator may name, and what is refused.
        #expect(try DatastorePeers.labels("app=db, tier=data") == ["app": "db", "tier": "data"])
        #expect(throws: DatastorePeers.InvalidPeer.self) { try DatastorePeers.labels("app") }
        #expect(throws: DatastorePeers.InvalidPeer.self) { try DatastorePeers.labels("") }
        #expect(try DatastorePeers.cidr("10.0.3.0/24") == "10.0.3.0/24")
        for refused in ["0.0.0.0/0", "::/0", "10.0.0.1", "10.0.0.1/33", "db.internal/32", "fd00::/129"] {
            #expect(throws: DatastorePeers.InvalidPeer.self, "\(refused)") { try DatastorePeers.cidr(refused) }
        }
    }

    @Test func composeGivesEachServiceOnlyItsSecrets() throws {
        let text = DeploymentRenderer(manifests: try shipped(), image: "sluice:test").compose()
        let services = try #require((try Yams.load(yaml: text) as? [String: Any])?["services"] as? [String: Any])
        func environment(_ name: String) -> [String: String] { ((services[name] as? [String: Any])?["environment"] as? [String: String]) ?? [:] }
        #expect(environment("gateway")["SLUICE_GATEWAY_SIGNING_KEY"] != nil)
        #expect(environment("gateway")["SLUICE_JWT_ISSUER"] == "${SLUICE_JWT_ISSUER:?set SLUICE_JWT_ISSUER}")
        for name in ["ingest", "validate", "load", "notify", "calls", "privacy", "warehouse", "migrate"] {
            #expect(environment(name)["SLUICE_JWT_SECRET"] == nil && environment(name)["SLUICE_GATEWAY_SIGNING_KEY"] == nil, "\(name)")
        }
        #expect(environment("load")["SLUICE_PSEUDONYM_KEY"] == nil && environment("load")["SLUICE_WEBHOOK_SECRET"] == nil)
        #expect(environment("validate")["SLUICE_GATEWAY_PUBLIC_KEY"] != nil && environment("validate")["SLUICE_PSEUDONYM_KEY"] != nil)
        #expect(environment("notify")["SLUICE_WEBHOOK_SECRET"] != nil)
        let functions = try shipped().map(\.name)
        #expect(environment("migrate").keys.sorted() == (["SLUICE_DATABASE_URL", "SLUICE_FUNCTIONS_DIR", "SLUICE_LOG_LEVEL", "SLUICE_METRICS_PORT"]
            + functions.map { DeploymentRenderer.rolePasswordVariable($0) }).sorted())
        #expect(environment("migrate")["SLUICE_DATABASE_URL"] == "postgres://sluice:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}@postgres:5432/sluice")
        #expect(environment("migrate")["SLUICE_ROLE_PASSWORD_LOAD"] == "${SLUICE_DB_PASSWORD_LOAD:?set SLUICE_DB_PASSWORD_LOAD}")
        #expect((services["migrate"] as? [String: Any])?["command"] as? [String] == ["migrate", "--roles"])
        // Every function logs in as its own role, with its own password; none holds the owner's.
        for name in functions {
            let variable = "SLUICE_DB_PASSWORD_" + name.uppercased()
            #expect(environment(name)["SLUICE_DATABASE_URL"] == "postgres://sluice_\(name):${\(variable):?set \(variable)}@postgres:5432/sluice", "\(name)")
            #expect(!environment(name).values.contains { $0.contains("POSTGRES_PASSWORD") }, "\(name)")
        }
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
