import Sluice

/// Functions in other languages (manifest `runtime.command`), deployed as Sluice deploys every
/// function — one Deployment (or Compose service) each, KEDA on its stream — with the function's
/// own process in a second container of the pod, from its own image (`runtime.image`). The two
/// share the pod's network: Sluice calls the process on 127.0.0.1 (`SLUICE_FUNCTION_URL`), or
/// serves it the Lambda Runtime API there (`SLUICE_LAMBDA_API_PORT`). The bearer token they
/// share is the key NAME of the Secret `sluice-function-tokens`.
extension DeploymentRenderer {
    /// The Secret holding each function's bearer token, under the function's name.
    public static let functionTokensSecret = "sluice-function-tokens"
    /// The port of the process in the pod when the manifest names none.
    public static let sidecarPort = 9101
    /// The port of the Lambda Runtime API Sluice serves in the pod.
    public static let lambdaAPIPort = 9001

    /// The process's image: `runtime.image`, or `sluice-function-NAME:latest`.
    static func functionImage(_ manifest: Manifest) -> String {
        manifest.runtime?.image ?? "sluice-function-\(manifest.name):latest"
    }

    /// Whether the function has a process of its own to deploy beside Sluice.
    static func hasSidecar(_ manifest: Manifest) -> Bool { manifest.runtime?.command != nil }

    static func sidecarPort(_ manifest: Manifest) -> Int { manifest.runtime?.port ?? sidecarPort }

    /// The variables of the Sluice container that point it at the process beside it.
    static func sidecarSettings(_ manifest: Manifest) -> [(String, String)] {
        guard let runtime = manifest.runtime, runtime.command != nil else { return [] }
        return runtime.wireProtocol == .lambda
            ? [("SLUICE_LAMBDA_API_PORT", String(lambdaAPIPort))]
            : [("SLUICE_FUNCTION_URL", "http://127.0.0.1:\(sidecarPort(manifest))")]
    }

    /// The process's own variables (besides its token): as `sluice serve` would set them.
    static func processSettings(_ manifest: Manifest) -> [(String, String)] {
        guard let runtime = manifest.runtime else { return [] }
        var settings: [(String, String)] = [("SLUICE_FUNCTION_NAME", manifest.name), ("PYTHONUNBUFFERED", "1")]
        if runtime.wireProtocol == .lambda {
            var lambda = [(String, String)]()
            let names = ["AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
                         "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "LAMBDA_TASK_ROOT"]
            let values: [String: String] = [
                "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:\(lambdaAPIPort)", "AWS_LAMBDA_FUNCTION_NAME": manifest.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": String((runtime.memoryBytes ?? 128 << 20) >> 20),
                "AWS_REGION": "local", "LAMBDA_TASK_ROOT": "/function",
            ]
            for name in names { lambda.append((name, values[name]!)) }
            settings += lambda
        } else {
            settings.append(("PORT", String(sidecarPort(manifest))))
        }
        settings += manifest.environment.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return settings
    }

    static var tokenReference: (String) -> YAMLValue {
        { name in ["name": "SLUICE_FUNCTION_TOKEN", "valueFrom": ["secretKeyRef": ["name": .string(functionTokensSecret), "key": .string(name)]]] }
    }

    /// The Sluice container's extra variables in Kubernetes.
    static func kubernetesSidecarEnvironment(_ manifest: Manifest) -> [YAMLValue] {
        guard hasSidecar(manifest) else { return [] }
        var environment: [YAMLValue] = sidecarSettings(manifest).map { ["name": .string($0.0), "value": .string($0.1)] }
        if manifest.runtime?.wireProtocol != .lambda { environment.append(tokenReference(manifest.name)) }
        return environment
    }

    /// The process's container in Kubernetes: its image and command, in /function, hardened as
    /// Sluice's; ready once its port accepts connections (http), with the manifest's memory.
    func sidecarContainer(_ manifest: Manifest) -> YAMLValue {
        let runtime = manifest.runtime!
        var environment: [YAMLValue] = Self.processSettings(manifest).map { ["name": .string($0.0), "value": .string($0.1)] }
        if runtime.wireProtocol != .lambda { environment.append(Self.tokenReference(manifest.name)) }
        let memory = runtime.memoryBytes.map { "\($0 >> 20)Mi" } ?? "256Mi"
        var fields: [(String, YAMLValue)] = [
            ("name", "function"),
            ("image", .string(Self.functionImage(manifest))),
            ("imagePullPolicy", "IfNotPresent"),
            ("command", .list((runtime.command ?? []).map { .string($0) })),
            ("workingDir", "/function"),
            ("env", .list(environment)),
            ("resources", ["requests": ["cpu": "100m", "memory": .string(memory)], "limits": ["memory": .string(memory)]]),
            ("securityContext", Self.containerSecurity),
            ("volumeMounts", [["name": "tmp", "mountPath": "/tmp"]]),
        ]
        if runtime.wireProtocol != .lambda {
            let port = Self.sidecarPort(manifest)
            fields.insert(("ports", [["name": "function", "containerPort": .int(port), "protocol": "TCP"]]), at: 5)
            let probe: YAMLValue = ["tcpSocket": ["port": "function"], "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3]
            fields += [("startupProbe", ["tcpSocket": ["port": "function"], "periodSeconds": 2, "failureThreshold": 30]),
                       ("livenessProbe", probe), ("readinessProbe", probe)]
        }
        return .map(fields)
    }

    /// The process's Compose service: in the network of the function's Sluice service
    /// (`network_mode: service:NAME`), so that 127.0.0.1 is shared as in a pod.
    func composeSidecar(_ manifest: Manifest) -> YAMLValue {
        let runtime = manifest.runtime!
        var environment: [(String, YAMLValue)] = Self.processSettings(manifest).map { ($0.0, .string($0.1)) }
        if runtime.wireProtocol != .lambda { environment.append(("SLUICE_FUNCTION_TOKEN", .string(Self.composeTokenVariable(manifest)))) }
        var fields: [(String, YAMLValue)] = [
            ("image", .string(Self.functionImage(manifest))),
            ("command", .list((runtime.command ?? []).map { .string($0) })),
            ("working_dir", "/function"),
            ("environment", .map(environment)),
            ("network_mode", .string("service:\(manifest.name)")),
            ("depends_on", .list([.string(manifest.name)])),
            ("restart", "unless-stopped"),
        ]
        if let bytes = runtime.memoryBytes { fields.append(("mem_limit", .string("\(bytes >> 20)m"))) }
        fields += Self.hardening
        return .map(fields)
    }

    /// `${SLUICE_FUNCTION_TOKEN_NAME:?…}`: the token both services of a function share.
    static func composeTokenVariable(_ manifest: Manifest) -> String {
        let variable = "SLUICE_FUNCTION_TOKEN_" + manifest.name.uppercased().replacingOccurrences(of: "-", with: "_")
        return "${\(variable):?set \(variable) (16 or more random characters)}"
    }

    /// The Sluice service's extra variables in Compose.
    static func composeSidecarEnvironment(_ manifest: Manifest) -> [(String, YAMLValue)] {
        guard hasSidecar(manifest) else { return [] }
        var environment: [(String, YAMLValue)] = sidecarSettings(manifest).map { ($0.0, .string($0.1)) }
        if manifest.runtime?.wireProtocol != .lambda { environment.append(("SLUICE_FUNCTION_TOKEN", .string(composeTokenVariable(manifest)))) }
        return environment
    }
}
