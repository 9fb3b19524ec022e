import Foundation

/// Where Redis and PostgreSQL run, as the NetworkPolicies name them: the only destinations the
/// pods may reach on 6379 and 5432 (`sluice render k8s --redis-selector … --postgres-cidr …`).
public struct DatastorePeers: Sendable, Equatable {
    /// One data store's pods or addresses.
    public enum Peer: Sendable, Equatable {
        /// Pods with these labels, in the namespace given (nil: the namespace Sluice runs in).
        case pods(labels: [String: String], namespace: String?)
        /// These address ranges (a managed database, or servers outside the cluster).
        case addresses([String])
    }

    /// Redis: by default the pods labelled `app.kubernetes.io/name: redis` beside Sluice.
    public var redis: Peer
    /// PostgreSQL: by default the pods labelled `app.kubernetes.io/name: postgresql` beside Sluice.
    public var postgres: Peer

    /// The default labels of Redis' pods (those of the common Helm charts).
    public static let defaultRedisLabels = ["app.kubernetes.io/name": "redis"]
    /// The default labels of PostgreSQL's pods (those of the common Helm charts).
    public static let defaultPostgresLabels = ["app.kubernetes.io/name": "postgresql"]

    /// The data stores; by default their pods with the Helm charts' labels, beside Sluice.
    public init(redis: Peer = .pods(labels: DatastorePeers.defaultRedisLabels, namespace: nil),
                postgres: Peer = .pods(labels: DatastorePeers.defaultPostgresLabels, namespace: nil)) {
        self.redis = redis
        self.postgres = postgres
    }

    /// Why a selector or an address range was refused.
    public struct InvalidPeer: Error, Sendable, CustomStringConvertible {
        /// Always `invalid_datastore_peer`.
        public let code = "invalid_datastore_peer"
        /// What was wrong with the value given.
        public var message: String
        /// The code and the message.
        public var description: String { "\(code): \(message)" }
    }

    /// Labels written `key=value,key=value`.
    /// - Throws: ``InvalidPeer`` for an empty list or an entry without `=`.
    public static func labels(_ text: String) throws(InvalidPeer) -> [String: String] {
        var labels: [String: String] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, !parts[0].isEmpty else { throw InvalidPeer(message: "'\(entry)' is not key=value") }
            labels[parts[0]] = parts[1]
        }
        guard !labels.isEmpty else { throw InvalidPeer(message: "no labels given") }
        return labels
    }

    /// An address range as a NetworkPolicy's `ipBlock` takes it: IPv4 or IPv6 with a prefix length.
    /// - Throws: ``InvalidPeer`` otherwise. `0.0.0.0/0` and `::/0` are refused: every address is
    ///   what the policy is there to prevent.
    public static func cidr(_ text: String) throws(InvalidPeer) -> String {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let length = Int(parts[1]), !parts[0].isEmpty,
              parts[0].allSatisfy({ $0.isHexDigit || $0 == "." || $0 == ":" }) else {
            throw InvalidPeer(message: "'\(text)' is not an address range (10.0.3.7/32, fd00::5/128)")
        }
        let ipv6 = parts[0].contains(":")
        guard (0...(ipv6 ? 128 : 32)).contains(length) else { throw InvalidPeer(message: "'\(text)' has a prefix length out of range") }
        guard length > 0 else { throw InvalidPeer(message: "'\(text)' is every address: name the data store's addresses") }
        return text
    }
}
