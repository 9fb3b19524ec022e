import Foundation
import Synchronization

/// The ids of the caller assertions a process has accepted, until they expire: an assertion is
/// accepted once. Bounded: ids leave when their assertion can no longer be accepted anyway
/// (`exp + skew`), and past ``capacity`` live ids a new one is refused rather than an old one
/// forgotten (forgetting would let that one be replayed).
///
/// One per process: replicas of a function do not share it (see docs/security.md).
public final class CallerReplayGuard: Sendable {
    private struct State {
        var seen: [String: Int64] = [:]
        /// Ids in the order they were claimed, with their expiry; expiries are nearly ordered
        /// (every assertion lives as long), so purging from the front frees all but a few.
        var order: [(id: String, until: Int64)] = []
        var head = 0
    }

    /// The most ids remembered at once.
    public let capacity: Int
    private let state = Mutex(State())

    /// A guard that remembers up to `capacity` live ids (200,000: about 2,800 requests a second
    /// for the 70 s an assertion can live).
    public init(capacity: Int = 200_000) {
        self.capacity = capacity
    }

    /// Claims `id`, valid until `until` (Unix seconds); `false` when it was claimed before and
    /// has not expired, or when the guard is full.
    public func claim(_ id: String, until: Int64, now: Int64 = Int64(Date().timeIntervalSince1970)) -> Bool {
        state.withLock { state in
            while state.head < state.order.count, state.order[state.head].until < now {
                let entry = state.order[state.head]
                if state.seen[entry.id] == entry.until { state.seen[entry.id] = nil }
                state.head += 1
            }
            if state.head > 1024, state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
            if let expiry = state.seen[id], expiry >= now { return false }
            guard state.seen.count < capacity else { return false }
            state.seen[id] = until
            state.order.append((id, until))
            return true
        }
    }

    /// How many ids are remembered (for tests).
    var count: Int { state.withLock { $0.seen.count } }
}
