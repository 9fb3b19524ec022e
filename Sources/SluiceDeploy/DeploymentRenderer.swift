import Sluice

/// Deployment manifests generated from the function manifests (`sluice render k8s|compose`),
/// so that what is deployed and what the runtime reads cannot disagree.
///
/// Every function runs as its own container of the one image, with the command
/// `serve NAME` (the image's entry point is `sluice`) and port 8080 for health, metrics,
/// `/invoke` and its routes.
public struct DeploymentRenderer: Sendable {
    /// The image every container runs.
    public var image: String
    /// The functions, in a stable order.
    public var manifests: [Manifest]
    public var keys = StreamKeys()
    /// Where the NetworkPolicies let the pods reach Redis and PostgreSQL.
    public var datastores = DatastorePeers()

    /// The port every function's container listens on.
    public static let port = 8080
    /// The image `sluice render` writes when none is given.
    public static let defaultImage = "sluice:latest"
    /// The port `/metrics` is served on (`SLUICE_METRICS_PORT`), apart from the published one.
    public static let metricsPort = 9090
    /// The ConfigMap every container's environment comes from.
    public static let configMapName = "sluice-config"

    /// The Secrets the operator creates, one per concern, each given only to the containers that
    /// need it (the Secrets are referenced, never rendered).
    public enum SecretConcern: String, Sendable, CaseIterable {
        /// `SLUICE_REDIS_URL`, `SLUICE_REDIS_PASSWORD` (also KEDA's): every function.
        case datastores
        /// `SLUICE_DATABASE_URL` of the role that owns the schema (and may create roles): the
        /// migration only. Each function has its own role's URL in ``databaseSecretName(for:)``.
        case database
        /// `SLUICE_JWT_SECRET` or `SLUICE_JWT_PUBLIC_KEY` / `SLUICE_JWT_JWKS_URL`, `SLUICE_JWT_ISSUER`,
        /// `SLUICE_JWT_AUDIENCE`, `SLUICE_GATEWAY_SIGNING_KEY`: the gateway only.
        case gateway
        /// `SLUICE_GATEWAY_PUBLIC_KEY`: every function but the gateway, to check the gateway's assertions.
        case callerKey = "caller-key"
        /// `SLUICE_PSEUDONYM_KEY`: the functions that mask or pseudonymise personal data.
        case pseudonym
        /// `SLUICE_WEBHOOK_SECRET`, `SLUICE_WEBHOOK_URL`, `SLUICE_SLACK_WEBHOOK_URL`, `SLUICE_SMTP_URL`,
        /// `SLUICE_NOTIFY_EMAIL_FROM`, `SLUICE_NOTIFY_EMAIL_TO`, `SLUICE_CALLBACK_ALLOW_HOSTS`: the functions that send.
        case delivery

        /// The Secret's name.
        public var secretName: String { "sluice-\(rawValue)" }
    }

    /// The handlers that pseudonymise without declaring `pii-mask` themselves: ingest's dry run
    /// and calls build validate, privacy stores subjects as pseudonyms, warehouse masks `PUT`.
    static let pseudonymHandlers: Set<String> = ["ingest", "calls", "privacy", "warehouse"]
    /// The handlers that send to addresses outside the cluster.
    static let sendingHandlers: Set<String> = ["notify", "calls"]

    /// The Secrets function `manifest`'s container is given.
    public static func secrets(for manifest: Manifest) -> [SecretConcern] {
        var concerns: [SecretConcern] = [.datastores]
        if manifest.handler == "gateway" {
            concerns.append(.gateway)
        } else {
            concerns.append(.callerKey)
        }
        if manifest.middleware.contains("pii-mask") || pseudonymHandlers.contains(manifest.handler) { concerns.append(.pseudonym) }
        if sendingHandlers.contains(manifest.handler) { concerns.append(.delivery) }
        return concerns
    }
    /// The Secret holding function `manifest`'s own database credentials: `SLUICE_DATABASE_URL`
    /// (as its role, `sluice_NAME`) and `SLUICE_DATABASE_PASSWORD` (the role's password, which
    /// the migration sets).
    public static func databaseSecretName(for manifest: Manifest) -> String { "sluice-db-\(manifest.name)" }

    /// `SLUICE_ROLE_PASSWORD_NAME`: how `sluice migrate --roles` is given function `name`'s password.
    public static func rolePasswordVariable(_ name: String) -> String {
        "SLUICE_ROLE_PASSWORD_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// HTTP functions wait this long after being told to stop, so that endpoints and load
    /// balancers stop sending before the server closes.
    public static let preStopSeconds = 5

    public init(manifests: [Manifest], image: String = DeploymentRenderer.defaultImage) {
        self.manifests = manifests.sorted { $0.name < $1.name }
        self.image = image
    }

    /// The functions with HTTP routes the gateway forwards to (every one but the gateway).
    var upstreams: [Manifest] { manifests.filter { $0.servesHTTP && $0.handler != "gateway" } }

    /// `SLUICE_UPSTREAM_<NAME>` for every HTTP function the gateway may route to, at `host(name)`.
    func upstreamEnvironment(host: (String) -> String) -> [(String, YAMLValue)] {
        upstreams.map { manifest in
            let variable = "SLUICE_UPSTREAM_" + manifest.name.uppercased().replacingOccurrences(of: "-", with: "_")
            return (variable, .string("http://\(host(manifest.name)):\(Self.port)"))
        }
    }

    /// Seconds from SIGTERM to SIGKILL: the HTTP pause, the runtime's drain, and a margin.
    func gracePeriod(_ manifest: Manifest) -> Int {
        (manifest.servesHTTP ? Self.preStopSeconds : 0) + Int(DeploySettings.drainLimit.components.seconds) + 10
    }

    static func labels(_ component: String) -> YAMLValue {
        ["app.kubernetes.io/name": "sluice", "app.kubernetes.io/component": .string(component), "app.kubernetes.io/part-of": "sluice"]
    }

    static func selector(_ component: String) -> YAMLValue {
        ["app.kubernetes.io/name": "sluice", "app.kubernetes.io/component": .string(component)]
    }

    static let header = "Generated by `sluice render` from functions/*/function.yaml: edit those and render again."
}

// MARK: - Kubernetes

extension DeploymentRenderer {
    /// Every Kubernetes object: the ConfigMap, the migration Job, then per function its
    /// Deployment, PodDisruptionBudget, and Service plus HorizontalPodAutoscaler (HTTP) or KEDA
    /// ScaledObject (stream), the KEDA TriggerAuthentication and the Prometheus scrape config.
    public func kubernetesObjects() -> [YAMLValue] {
        var objects: [YAMLValue] = [configMap(), redisTriggerAuthentication(), migrationJob()]
        objects += networkPolicies()
        for manifest in manifests {
            objects.append(deployment(manifest))
            objects.append(disruptionBudget(manifest))
            if manifest.servesHTTP {
                objects.append(service(manifest))
                objects.append(autoscaler(manifest))
            }
            if manifest.inputStream != nil { objects.append(scaledObject(manifest)) }
        }
        objects.append(prometheusConfig())
        return objects
    }

    /// `sluice render k8s`: every object as one multi-document YAML file.
    public func kubernetes() -> String {
        YAMLDocument.render(kubernetesObjects(), header: Self.header + "\nApply with: kubectl apply -n NAMESPACE -f k8s.yaml (after creating the Secrets "
            + SecretConcern.allCases.map(\.secretName).joined(separator: ", ")
            + " and sluice-db-FUNCTION for each function; see docs/deploying.md).")
    }

    static func metadata(_ name: String, component: String) -> YAMLValue {
        ["name": .string(name), "labels": labels(component)]
    }

    func configMap() -> YAMLValue {
        var data: [(String, YAMLValue)] = [
            ("SLUICE_FUNCTIONS_DIR", "/app/functions"),
            ("SLUICE_LOG_LEVEL", "info"),
            // Where KEDA's redis-streams scaler finds Redis (host:port); the processes use SLUICE_REDIS_URL.
            ("SLUICE_REDIS_ADDRESS", "redis:6379"),
            // /metrics apart from the port the gateway publishes.
            ("SLUICE_METRICS_PORT", .string(String(Self.metricsPort))),
        ]
        data += upstreamEnvironment { "sluice-\($0)" }
        return [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": Self.metadata(Self.configMapName, component: "config"),
            "data": .map(data),
        ]
    }

    func redisTriggerAuthentication() -> YAMLValue {
        [
            "apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
            "metadata": Self.metadata("sluice-redis", component: "autoscaling"),
            "spec": ["secretTargetRef": [
                ["parameter": "password", "name": .string(SecretConcern.datastores.secretName), "key": "SLUICE_REDIS_PASSWORD"],
            ]],
        ]
    }

    func environmentSources(_ concerns: [SecretConcern], functionSecret: String? = nil) -> YAMLValue {
        .list([["configMapRef": ["name": .string(Self.configMapName)]]]
              + concerns.map { ["secretRef": ["name": .string($0.secretName)]] }
              + (functionSecret.map { [["secretRef": ["name": .string($0)]]] } ?? []))
    }

    static let podSecurity: YAMLValue = [
        "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
        "seccompProfile": ["type": "RuntimeDefault"],
    ]

    static let containerSecurity: YAMLValue = [
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
        "capabilities": ["drop": ["ALL"]],
    ]

    static func resources(_ settings: DeploySettings) -> YAMLValue {
        [
            "requests": ["cpu": .string(settings.requests.cpu), "memory": .string(settings.requests.memory)],
            "limits": ["cpu": .string(settings.limits.cpu), "memory": .string(settings.limits.memory)],
        ]
    }

    static func probe(_ path: String, period: Int, failures: Int) -> YAMLValue {
        [
            "httpGet": ["path": .string(path), "port": "http"],
            "periodSeconds": .int(period), "timeoutSeconds": 2, "failureThreshold": .int(failures),
        ]
    }

    func container(name: String, arguments: [String], settings: DeploySettings, probes: Bool, preStop: Bool,
                   secrets: [SecretConcern], functionSecret: String? = nil, environment: [YAMLValue] = []) -> YAMLValue {
        var fields: [(String, YAMLValue)] = [
            ("name", .string(name)),
            ("image", .string(image)),
            ("imagePullPolicy", "IfNotPresent"),
            ("args", .list(arguments.map { .string($0) })),
            ("envFrom", environmentSources(secrets, functionSecret: functionSecret)),
            ("resources", Self.resources(settings)),
            ("securityContext", Self.containerSecurity),
            ("volumeMounts", [["name": "tmp", "mountPath": "/tmp"]]),
        ]
        if !environment.isEmpty {
            fields.insert(("env", .list(environment)), at: 5)
        }
        if probes {
            fields.insert(("ports", [["name": "http", "containerPort": .int(Self.port), "protocol": "TCP"],
                                     ["name": "metrics", "containerPort": .int(Self.metricsPort), "protocol": "TCP"]]), at: 4)
            fields += [
                // Starting includes connecting to Redis and PostgreSQL: up to a minute.
                ("startupProbe", Self.probe("/health/live", period: 2, failures: 30)),
                ("livenessProbe", Self.probe("/health/live", period: 10, failures: 3)),
                // Ready only when Redis and PostgreSQL answer and the migrations are current.
                ("readinessProbe", Self.probe("/health/ready", period: 5, failures: 2)),
            ]
        }
        if preStop {
            fields.append(("lifecycle", ["preStop": ["sleep": ["seconds": .int(Self.preStopSeconds)]]]))
        }
        return .map(fields)
    }

    func podSpec(containers: [YAMLValue], grace: Int, restartPolicy: String? = nil) -> YAMLValue {
        var fields: [(String, YAMLValue)] = []
        if let restartPolicy { fields.append(("restartPolicy", .string(restartPolicy))) }
        fields += [
            ("automountServiceAccountToken", false),
            ("terminationGracePeriodSeconds", .int(grace)),
            ("securityContext", Self.podSecurity),
            ("containers", .list(containers)),
            ("volumes", [["name": "tmp", "emptyDir": ["sizeLimit": "64Mi"]]]),
        ]
        return .map(fields)
    }

    func migrationJob() -> YAMLValue {
        [
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": Self.metadata("sluice-migrate", component: "migrate"),
            "spec": [
                "backoffLimit": 10,
                // Removed once finished, so that applying a new image runs the migration again.
                "ttlSecondsAfterFinished": 600,
                "template": [
                    "metadata": ["labels": Self.labels("migrate")],
                    // The owner's credentials, and every function's role password to set (a role
                    // whose Secret is missing is created NOLOGIN).
                    "spec": podSpec(containers: [container(name: "migrate", arguments: ["migrate", "--roles"], settings: DeploySettings(),
                                                           probes: false, preStop: false, secrets: [.database],
                                                           environment: manifests.map { manifest in
                                                               ["name": .string(Self.rolePasswordVariable(manifest.name)), "valueFrom": ["secretKeyRef": [
                                                                   "name": .string(Self.databaseSecretName(for: manifest)), "key": "SLUICE_DATABASE_PASSWORD",
                                                                   "optional": true,
                                                               ]]]
                                                           })],
                                    grace: 30, restartPolicy: "OnFailure"),
                ],
            ],
        ]
    }

    func deployment(_ manifest: Manifest) -> YAMLValue {
        let name = "sluice-\(manifest.name)"
        // No `replicas`: KEDA (stream functions) or the HPA (HTTP functions) owns the count, and
        // applying the file again must not reset it.
        return [
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": Self.metadata(name, component: manifest.name),
            "spec": [
                "revisionHistoryLimit": 5,
                "selector": ["matchLabels": Self.selector(manifest.name)],
                "strategy": ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": 1, "maxUnavailable": 0]],
                "template": [
                    "metadata": [
                        "labels": Self.labels(manifest.name),
                        "annotations": ["prometheus.io/scrape": "true", "prometheus.io/port": .string(String(Self.metricsPort)), "prometheus.io/path": "/metrics"],
                    ],
                    "spec": podSpec(containers: [container(name: manifest.name, arguments: ["serve", manifest.name], settings: manifest.deploy,
                                                           probes: true, preStop: manifest.servesHTTP, secrets: Self.secrets(for: manifest),
                                                           functionSecret: Self.databaseSecretName(for: manifest),
                                                           environment: Self.kubernetesEnvironment(for: manifest) + Self.kubernetesSidecarEnvironment(manifest))]
                                        + (Self.hasSidecar(manifest) ? [sidecarContainer(manifest)] : []),
                                    grace: gracePeriod(manifest)),
                ],
            ],
        ]
    }

    func disruptionBudget(_ manifest: Manifest) -> YAMLValue {
        [
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": Self.metadata("sluice-\(manifest.name)", component: manifest.name),
            "spec": ["maxUnavailable": 1, "selector": ["matchLabels": Self.selector(manifest.name)]],
        ]
    }

    func service(_ manifest: Manifest) -> YAMLValue {
        [
            "apiVersion": "v1", "kind": "Service",
            "metadata": Self.metadata("sluice-\(manifest.name)", component: manifest.name),
            "spec": [
                "type": "ClusterIP",
                "selector": Self.selector(manifest.name),
                "ports": [["name": "http", "port": .int(Self.port), "targetPort": "http", "protocol": "TCP"]],
            ],
        ]
    }

    func autoscaler(_ manifest: Manifest) -> YAMLValue {
        [
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": Self.metadata("sluice-\(manifest.name)", component: manifest.name),
            "spec": [
                "scaleTargetRef": ["apiVersion": "apps/v1", "kind": "Deployment", "name": .string("sluice-\(manifest.name)")],
                "minReplicas": .int(max(1, manifest.deploy.minReplicas)),
                "maxReplicas": .int(manifest.deploy.maxReplicas),
                "metrics": [[
                    "type": "Resource",
                    "resource": ["name": "cpu", "target": ["type": "Utilization", "averageUtilization": .int(manifest.deploy.cpuUtilization)]],
                ]],
            ],
        ]
    }

    func scaledObject(_ manifest: Manifest) -> YAMLValue {
        let stream = manifest.inputStream ?? manifest.name
        return [
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": Self.metadata("sluice-\(manifest.name)", component: manifest.name),
            "spec": [
                "scaleTargetRef": ["name": .string("sluice-\(manifest.name)")],
                "minReplicaCount": .int(manifest.deploy.minReplicas),
                "maxReplicaCount": .int(manifest.deploy.maxReplicas),
                "pollingInterval": 10,
                "cooldownPeriod": 300,
                "triggers": [[
                    "type": "redis-streams",
                    "metadata": [
                        "addressFromEnv": "SLUICE_REDIS_ADDRESS",
                        "stream": .string(keys.stream(stream)),
                        // The function's own group: its name (as `sluice serve` creates it).
                        "consumerGroup": .string(manifest.name),
                        "lagCount": .string(String(manifest.deploy.lagCount)),
                        "databaseIndex": "0",
                    ],
                    "authenticationRef": ["name": "sluice-redis"],
                ]],
            ],
        ]
    }

    /// Prometheus' scrape configuration for the pods (the `prometheus.io/*` annotations).
    public func prometheusKubernetesScrape() -> String {
        YAMLDocument.render([[
            "scrape_configs": [[
                "job_name": "sluice",
                "kubernetes_sd_configs": [["role": "pod"]],
                "relabel_configs": [
                    ["source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"], "regex": "sluice", "action": "keep"],
                    ["source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "regex": "true", "action": "keep"],
                    ["source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"],
                    // `component`, not `function`: the metrics carry a `function` label of their own.
                    ["source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"], "target_label": "component"],
                    ["source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"],
                    ["source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"],
                ],
            ]],
        ]])
    }

    func prometheusConfig() -> YAMLValue {
        [
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": Self.metadata("sluice-prometheus", component: "monitoring"),
            "data": ["prometheus.yml": .string(prometheusKubernetesScrape())],
        ]
    }
}

// MARK: - Compose

extension DeploymentRenderer {
    /// Redis' persistence in the compose file: every write in the append-only file, fsync'd
    /// before Redis answers (see "Redis persistence" in docs/deploying.md).
    public static let appendFsync = "always"

    /// The variables of each Secret concern, as compose takes them from the shell or `.env`
    /// (`:?` refuses to start without a required one).
    static func composeVariables(_ concern: SecretConcern) -> [(String, YAMLValue)] {
        switch concern {
        case .datastores:
            [("SLUICE_REDIS_URL", "redis://redis:6379/0")]
        case .database:
            [("SLUICE_DATABASE_URL", "postgres://sluice:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}@postgres:5432/sluice")]
        case .gateway:
            // One of the secret, a key set (JWKS) or discovery: the gateway refuses to start without one.
            [("SLUICE_JWT_SECRET", "${SLUICE_JWT_SECRET:-}"),
             ("SLUICE_JWT_JWKS_URL", "${SLUICE_JWT_JWKS_URL:-}"),
             ("SLUICE_JWT_DISCOVERY", "${SLUICE_JWT_DISCOVERY:-}"),
             ("SLUICE_JWT_ISSUER", "${SLUICE_JWT_ISSUER:?set SLUICE_JWT_ISSUER}"),
             ("SLUICE_JWT_AUDIENCE", "${SLUICE_JWT_AUDIENCE:?set SLUICE_JWT_AUDIENCE}"),
             ("SLUICE_GATEWAY_SIGNING_KEY", "${SLUICE_GATEWAY_SIGNING_KEY:?set SLUICE_GATEWAY_SIGNING_KEY (sluice keys)}")]
        case .callerKey:
            [("SLUICE_GATEWAY_PUBLIC_KEY", "${SLUICE_GATEWAY_PUBLIC_KEY:?set SLUICE_GATEWAY_PUBLIC_KEY (sluice keys)}")]
        case .pseudonym:
            [("SLUICE_PSEUDONYM_KEY", "${SLUICE_PSEUDONYM_KEY:?set SLUICE_PSEUDONYM_KEY}")]
        case .delivery:
            [("SLUICE_WEBHOOK_SECRET", "${SLUICE_WEBHOOK_SECRET:?set SLUICE_WEBHOOK_SECRET}"),
             ("SLUICE_WEBHOOK_URL", "${SLUICE_WEBHOOK_URL:-}"),
             ("SLUICE_SLACK_WEBHOOK_URL", "${SLUICE_SLACK_WEBHOOK_URL:-}"),
             ("SLUICE_SMTP_URL", "${SLUICE_SMTP_URL:-}"),
             ("SLUICE_NOTIFY_EMAIL_FROM", "${SLUICE_NOTIFY_EMAIL_FROM:-}"),
             ("SLUICE_NOTIFY_EMAIL_TO", "${SLUICE_NOTIFY_EMAIL_TO:-}")]
        }
    }

    /// The variable compose takes function `name`'s database password from.
    static func composePasswordVariable(_ name: String) -> String {
        "SLUICE_DB_PASSWORD_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// `${SLUICE_DB_PASSWORD_NAME:?…}`: required, as every function logs in as its own role.
    static func composePassword(_ name: String) -> String {
        let variable = composePasswordVariable(name)
        return "${\(variable):?set \(variable)}"
    }

    /// The environment of a service: the settings every process reads, then only the secrets
    /// its function needs and its own database role (`manifest` nil: the migration, which needs
    /// the owner's credentials and every role's password).
    func composeEnvironment(for manifest: Manifest?) -> YAMLValue {
        var fields: [(String, YAMLValue)] = [
            ("SLUICE_FUNCTIONS_DIR", "/app/functions"),
            ("SLUICE_LOG_LEVEL", "${SLUICE_LOG_LEVEL:-info}"),
            ("SLUICE_METRICS_PORT", .string(String(Self.metricsPort))),
        ]
        let concerns = manifest.map(Self.secrets(for:)) ?? [.database]
        for concern in concerns { fields += Self.composeVariables(concern) }
        guard let manifest else {
            for function in manifests { fields.append((Self.rolePasswordVariable(function.name), .string(Self.composePassword(function.name)))) }
            return .map(fields)
        }
        fields.append(("SLUICE_DATABASE_URL", .string("postgres://\(manifest.databaseRole):\(Self.composePassword(manifest.name))@postgres:5432/sluice")))
        fields += Self.composeSidecarEnvironment(manifest)
        if manifest.handler == "gateway" {
            fields += Self.gatewayEnvironment
            fields += upstreamEnvironment { $0 }
        }
        // Callers' callback URLs: ingest takes them, calls and notify send to them.
        if ["ingest", "calls", "notify"].contains(manifest.handler) {
            fields.append(("SLUICE_CALLBACK_ALLOW_HOSTS", "${SLUICE_CALLBACK_ALLOW_HOSTS:-}"))
        }
        return .map(fields)
    }

    static let hardening: [(String, YAMLValue)] = [
        ("read_only", true),
        ("tmpfs", ["/tmp"]),
        ("cap_drop", ["ALL"]),
        ("security_opt", ["no-new-privileges:true"]),
    ]

    func composeFunction(_ manifest: Manifest) -> YAMLValue {
        var fields: [(String, YAMLValue)] = [
            ("image", .string(image)),
            ("command", ["serve", .string(manifest.name)]),
            ("environment", composeEnvironment(for: manifest)),
            // Not on `migrate`: podman (4.3) cannot start a container that requires an exited one.
            // A function restarts until `migrate --roles` has made its role, and is not ready
            // until the migrations are applied.
            ("depends_on", [
                "redis": ["condition": "service_healthy"],
                "postgres": ["condition": "service_healthy"],
            ]),
            ("restart", "unless-stopped"),
            ("stop_grace_period", .string("\(gracePeriod(manifest))s")),
        ]
        if manifest.handler == "gateway" { fields.insert(("ports", ["8080:8080"]), at: 2) }
        fields += Self.hardening
        return .map(fields)
    }

    /// `sluice render compose`: Redis, PostgreSQL, the migration, one service per function
    /// (the gateway published on 8080) and Prometheus.
    public func compose() -> String {
        var services: [(String, YAMLValue)] = [
            ("redis", [
                "image": "redis:7.2-bookworm",
                "command": ["redis-server", "--appendonly", "yes", "--appendfsync", .string(Self.appendFsync)],
                "volumes": ["redis-data:/data"],
                "healthcheck": ["test": ["CMD", "redis-cli", "ping"], "interval": "5s", "timeout": "2s", "retries": 10],
                "restart": "unless-stopped",
            ]),
            ("postgres", [
                "image": "postgres:15-bookworm",
                "environment": [
                    "POSTGRES_USER": "sluice", "POSTGRES_DB": "sluice",
                    "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}",
                ],
                "volumes": ["postgres-data:/var/lib/postgresql/data"],
                "healthcheck": ["test": ["CMD", "pg_isready", "-U", "sluice", "-d", "sluice"], "interval": "5s", "timeout": "2s", "retries": 10],
                "restart": "unless-stopped",
            ]),
            ("migrate", .map([
                ("image", .string(image)),
                ("command", ["migrate", "--roles"]),
                ("environment", composeEnvironment(for: nil)),
                ("depends_on", ["postgres": ["condition": "service_healthy"]]),
                ("restart", "on-failure"),
                ("healthcheck", ["disable": true]),
            ] + Self.hardening)),
        ]
        for manifest in manifests {
            services.append((manifest.name, composeFunction(manifest)))
            if Self.hasSidecar(manifest) { services.append(("\(manifest.name)-process", composeSidecar(manifest))) }
        }
        services.append(("prometheus", [
            "image": "prom/prometheus:v2.53.2",
            "configs": [["source": "prometheus", "target": "/etc/prometheus/prometheus.yml"]],
            "ports": ["9090:9090"],
            "restart": "unless-stopped",
        ]))
        let targets: [YAMLValue] = manifests.map { .string("\($0.name):\(Self.metricsPort)") }
        let scrape = YAMLDocument.render([[
            "scrape_configs": [[
                "job_name": "sluice",
                "static_configs": [["targets": .list(targets)]],
            ]],
        ]])
        let document: YAMLValue = [
            "name": "sluice",
            "services": .map(services),
            "configs": ["prometheus": ["content": .string(scrape)]],
            "volumes": ["redis-data": [:], "postgres-data": [:]],
        ]
        return YAMLDocument.render([document], header: Self.header
            + "\nRun with: docker compose -f compose.yaml up (POSTGRES_PASSWORD, SLUICE_JWT_SECRET, SLUICE_JWT_ISSUER, SLUICE_JWT_AUDIENCE,"
            + "\nSLUICE_GATEWAY_SIGNING_KEY and SLUICE_GATEWAY_PUBLIC_KEY (from `sluice keys`), SLUICE_PSEUDONYM_KEY, SLUICE_WEBHOOK_SECRET"
            + "\nand SLUICE_DB_PASSWORD_<FUNCTION> for each function in the environment or .env). Each service is given only"
            + "\nthe secrets its function needs, and logs in to PostgreSQL as its own role (sluice_<function>, made by `migrate --roles`)."
            + "\nRedis keeps an append-only file with appendfsync \(Self.appendFsync): every write Sluice acknowledges is on disk before Redis"
            + "\nanswers, so no accepted event is lost even when the machine fails (everysec can lose about a second; see docs/deploying.md).")
    }
}
