/// How a failing chunk is retried: exponential backoff with jitter by delivery attempt, up to
/// `maxAttempts` deliveries, then the dead-letter stream.
public struct RetryPolicy: Sendable, Equatable {
    /// Deliveries in all, the first included. 1 means no retry.
    public var maxAttempts: Int
    /// The wait before the second attempt.
    public var initialBackoff: Duration
    /// The longest wait between attempts.
    public var maxBackoff: Duration
    /// The fraction (0…1) of a wait that is randomised away, so that retries of many chunks
    /// that failed together do not arrive together.
    public var jitter: Double

    /// Defaults: 5 attempts, 200 ms doubling to at most 30 s, 20 % jitter.
    public init(maxAttempts: Int = 5, initialBackoff: Duration = .milliseconds(200),
                maxBackoff: Duration = .seconds(30), jitter: Double = 0.2) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.jitter = jitter
    }

    /// Whether a chunk whose delivery number `attempt` (1-based) just failed with a retryable
    /// error gets another delivery.
    public func shouldRetry(afterAttempt attempt: Int) -> Bool {
        attempt < maxAttempts
    }

    /// The wait before delivery `attempt` (2 or more): `initialBackoff × 2^(attempt−2)`, capped
    /// at `maxBackoff`, then shortened by up to `jitter` of itself.
    ///
    /// - Parameter unitRandom: a number in `0..<1` (inject it to make the schedule testable).
    public func backoff(beforeAttempt attempt: Int, unitRandom: Double) -> Duration {
        let base = nominalBackoff(beforeAttempt: attempt)
        let factor = 1 - min(max(jitter, 0), 1) * min(max(unitRandom, 0), 1)
        return base * factor
    }

    /// The wait before delivery `attempt` without jitter.
    public func nominalBackoff(beforeAttempt attempt: Int) -> Duration {
        guard attempt >= 2 else { return .zero }
        let exponent = min(attempt - 2, 62)
        let initial = initialBackoff.seconds
        let capped = min(initial * Double(1 << min(exponent, 52)), maxBackoff.seconds)
        return .seconds(capped)
    }

    /// The waits before deliveries 2…`maxAttempts` without jitter.
    public var schedule: [Duration] {
        guard maxAttempts >= 2 else { return [] }
        return (2...maxAttempts).map { nominalBackoff(beforeAttempt: $0) }
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// The duration in whole nanoseconds, rounded down (what swift-metrics' timers record).
    public var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }

    /// The duration in whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
