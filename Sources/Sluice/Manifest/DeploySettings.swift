/// How a function is deployed: the `deploy` section of its manifest, read by `sluice render`.
///
/// ```yaml
/// deploy:
///   replicas: {min: 1, max: 8}   # bounds for KEDA (stream functions) or the HPA (HTTP functions)
///   lag_count: 10                # stream entries (chunks) waiting per replica before KEDA adds one
///   cpu_utilization: 70          # the HPA's target average CPU use, percent (HTTP functions)
///   resources:
///     requests: {cpu: 100m, memory: 128Mi}
///     limits: {cpu: "1", memory: 512Mi}
/// ```
public struct DeploySettings: Sendable, Equatable {
    /// Compute quantities in Kubernetes notation (`100m`, `1`, `128Mi`).
    public struct ComputeResources: Sendable, Equatable {
        public var cpu: String
        public var memory: String
        public init(cpu: String, memory: String) {
            self.cpu = cpu
            self.memory = memory
        }
    }

    /// The fewest replicas; 0 lets KEDA scale an idle stream function to none.
    public var minReplicas: Int = 1
    /// The most replicas.
    public var maxReplicas: Int = 4
    /// Entries of the function's stream not yet delivered to its group, per replica, that
    /// make KEDA add one.
    public var lagCount: Int = 10
    /// The HPA's target average CPU utilisation (percent of the request).
    public var cpuUtilization: Int = 70
    /// What the scheduler reserves.
    public var requests = ComputeResources(cpu: "100m", memory: "128Mi")
    /// What the container may use at most.
    public var limits = ComputeResources(cpu: "1", memory: "512Mi")

    public init() {}

    /// The longest a SIGTERM drain may take before a process cancels what is left (its
    /// unacknowledged entries stay pending and are reclaimed): shorter than the grace period
    /// a deployment gives it.
    public static let drainLimit: Duration = .seconds(25)

    /// Whether `text` is a Kubernetes quantity such as `250m`, `1.5`, `512Mi` or `1G`.
    public static func isQuantity(_ text: String) -> Bool {
        var digits = Substring(text)
        for suffix in ["Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T", "m"] where digits.hasSuffix(suffix) {
            digits = digits.dropLast(suffix.count)
            break
        }
        let parts = digits.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return false }
        return parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }
}
