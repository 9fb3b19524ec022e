import Sluice

/// Least privilege on the network: who may talk to whom.
///
/// - Every pod of Sluice starts with no traffic in or out (`sluice-default-deny`).
/// - Every pod may resolve names and reach Redis (6379) and PostgreSQL (5432) of the data stores'
///   pods or addresses only (``DatastorePeers``), never any address.
/// - Only the gateway takes traffic from anywhere, on its HTTP port; the other HTTP functions take
///   it from the gateway's pods only. Stream functions take none but the metrics scrape.
/// - `/metrics` (port 9090) is open to pods labelled `app.kubernetes.io/name: prometheus`, in any
///   namespace, and to no one else; it is not on the published port.
/// - The gateway may reach the HTTP functions and, on 443, a token issuer's key set (JWKS).
/// - Only notify and calls reach the outside (80, 443 and SMTP's 25, 465, 587), and not private,
///   link-local or loopback ranges: the runtime's SSRF policy refuses those too, and this is the
///   second wall should it fail.
extension DeploymentRenderer {
    /// The gateway's own settings, on its container only: it refuses to start without an issuer
    /// and an audience to check, since a provider issues tokens for many services.
    static let gatewayEnvironment: [(String, YAMLValue)] = [("SLUICE_JWT_REQUIRE_ISSUER_AUDIENCE", "true")]

    /// Variables a container gets one by one rather than with a whole Secret.
    static func kubernetesEnvironment(for manifest: Manifest) -> [YAMLValue] {
        var environment: [YAMLValue] = []
        if manifest.handler == "gateway" {
            for (name, value) in gatewayEnvironment { environment.append(["name": .string(name), "value": value]) }
        }
        // Ingest checks callers' callback URLs against the same allow list that calls and notify
        // send with: that one key of the delivery Secret, not its signing secret.
        if manifest.handler == "ingest" {
            environment.append(["name": "SLUICE_CALLBACK_ALLOW_HOSTS", "valueFrom": ["secretKeyRef": [
                "name": .string(SecretConcern.delivery.secretName), "key": "SLUICE_CALLBACK_ALLOW_HOSTS", "optional": true,
            ]]])
        }
        return environment
    }

    static let partOf: YAMLValue = ["matchLabels": ["app.kubernetes.io/part-of": "sluice"]]

    static func policy(_ name: String, pods: YAMLValue, types: [String], ingress: [YAMLValue]? = nil, egress: [YAMLValue]? = nil) -> YAMLValue {
        var spec: [(String, YAMLValue)] = [("podSelector", pods), ("policyTypes", .list(types.map { .string($0) }))]
        if let ingress { spec.append(("ingress", .list(ingress))) }
        if let egress { spec.append(("egress", .list(egress))) }
        return [
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(name, component: "network"),
            "spec": .map(spec),
        ]
    }

    static func tcp(_ port: YAMLValue) -> YAMLValue { ["protocol": "TCP", "port": port] }

    /// Public addresses only: the outside, not the cluster's or the node's own ranges.
    static let outside: [YAMLValue] = [
        ["ipBlock": ["cidr": "0.0.0.0/0", "except": ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                                                         "172.16.0.0/12", "192.168.0.0/16"]]],
        ["ipBlock": ["cidr": "::/0", "except": ["::1/128", "fc00::/7", "fe80::/10"]]],
    ]

    /// A data store as a policy's `to`: its pods (in its namespace when named) or its addresses.
    static func peers(_ peer: DatastorePeers.Peer) -> YAMLValue {
        switch peer {
        case .pods(let labels, let namespace):
            let selector: YAMLValue = ["matchLabels": .map(labels.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })]
            guard let namespace else { return [["podSelector": selector]] }
            return [["namespaceSelector": ["matchLabels": ["kubernetes.io/metadata.name": .string(namespace)]], "podSelector": selector]]
        case .addresses(let ranges):
            return .list(ranges.map { ["ipBlock": ["cidr": .string($0)]] })
        }
    }

    /// Every NetworkPolicy (see the type's documentation).
    func networkPolicies() -> [YAMLValue] {
        var policies: [YAMLValue] = [
            Self.policy("sluice-default-deny", pods: Self.partOf, types: ["Ingress", "Egress"]),
            Self.policy("sluice-datastores", pods: Self.partOf, types: ["Egress"], egress: [
                ["ports": [["protocol": "UDP", "port": 53], Self.tcp(53)]],
                ["to": Self.peers(datastores.redis), "ports": [Self.tcp(6379)]],
                ["to": Self.peers(datastores.postgres), "ports": [Self.tcp(5432)]],
            ]),
            Self.policy("sluice-metrics", pods: Self.partOf, types: ["Ingress"], ingress: [[
                "from": [["namespaceSelector": [:], "podSelector": ["matchLabels": ["app.kubernetes.io/name": "prometheus"]]]],
                "ports": [Self.tcp(.int(Self.metricsPort))],
            ]]),
        ]
        let gatewayPods: YAMLValue = ["podSelector": ["matchLabels": Self.selector("gateway")]]
        for manifest in manifests where manifest.servesHTTP {
            let pods: YAMLValue = ["matchLabels": Self.selector(manifest.name)]
            if manifest.handler == "gateway" {
                policies.append(Self.policy("sluice-\(manifest.name)-ingress", pods: pods, types: ["Ingress"],
                                            ingress: [["ports": [Self.tcp(.int(Self.port))]]]))
                let upstreamPods: [YAMLValue] = upstreams.map { ["podSelector": ["matchLabels": Self.selector($0.name)]] }
                var egress: [YAMLValue] = []
                if !upstreamPods.isEmpty { egress.append(["to": .list(upstreamPods), "ports": [Self.tcp(.int(Self.port))]]) }
                egress.append(["to": .list(Self.outside), "ports": [Self.tcp(443)]])
                policies.append(Self.policy("sluice-\(manifest.name)-egress", pods: pods, types: ["Egress"], egress: egress))
            } else {
                policies.append(Self.policy("sluice-\(manifest.name)-ingress", pods: pods, types: ["Ingress"],
                                            ingress: [["from": [gatewayPods], "ports": [Self.tcp(.int(Self.port))]]]))
            }
        }
        for manifest in manifests where Self.sendingHandlers.contains(manifest.handler) {
            policies.append(Self.policy("sluice-\(manifest.name)-egress", pods: ["matchLabels": Self.selector(manifest.name)], types: ["Egress"],
                                        egress: [["to": .list(Self.outside), "ports": [Self.tcp(80), Self.tcp(443), Self.tcp(25), Self.tcp(465), Self.tcp(587)]]]))
        }
        return policies
    }
}
