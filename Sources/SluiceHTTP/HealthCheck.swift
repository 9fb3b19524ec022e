/// Readiness checks: named probes that must all answer `true`.
public struct HealthCheck: Sendable {
    /// A named probe.
    public typealias Probe = @Sendable () async -> Bool

    let probes: [(String, Probe)]

    /// Creates checks from named probes, run in order.
    public init(_ probes: [(String, Probe)]) {
        self.probes = probes
    }

    /// Runs every probe (concurrently) and answers each one's result.
    public func run() async -> [(String, Bool)] {
        await withTaskGroup(of: (Int, Bool).self) { group in
            for (index, probe) in probes.enumerated() {
                group.addTask { (index, await probe.1()) }
            }
            var results = Array(repeating: false, count: probes.count)
            for await (index, ok) in group { results[index] = ok }
            return zip(probes.map(\.0), results).map { ($0, $1) }
        }
    }
}
