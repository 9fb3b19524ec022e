import CoreMetrics

/// The metrics every function reports, whichever trigger invoked it. Labels carry only the
/// function's name and fixed words, never data.
///
/// | name | type | labels |
/// |---|---|---|
/// | `sluice_invocations_total` | counter | function, trigger |
/// | `sluice_outcomes_total` | counter | function, kind |
/// | `sluice_invocation_duration_seconds` | histogram | function |
/// | `sluice_retries_total` | counter | function |
/// | `sluice_dead_letters_total` | counter | function |
/// | `sluice_stream_lag` / `sluice_stream_pending` | gauge | function |
public struct FunctionMetrics: Sendable {
    let function: String
    let streamInvocations: Counter
    let httpInvocations: Counter
    let outcomes: [Outcome.Kind: Counter]
    let duration: Timer
    let retries: Counter
    let deadLetters: Counter
    let lag: Gauge
    let pending: Gauge

    /// Creates (or finds) the metrics of function `function` in the bootstrapped metrics system.
    public init(function: String) {
        self.function = function
        streamInvocations = Counter(label: "sluice_invocations_total", dimensions: [("function", function), ("trigger", "stream")])
        httpInvocations = Counter(label: "sluice_invocations_total", dimensions: [("function", function), ("trigger", "http")])
        var outcomes: [Outcome.Kind: Counter] = [:]
        for kind in Outcome.Kind.allCases {
            outcomes[kind] = Counter(label: "sluice_outcomes_total", dimensions: [("function", function), ("kind", kind.rawValue)])
        }
        self.outcomes = outcomes
        duration = Timer(label: "sluice_invocation_duration_seconds", dimensions: [("function", function)], preferredDisplayUnit: .seconds)
        retries = Counter(label: "sluice_retries_total", dimensions: [("function", function)])
        deadLetters = Counter(label: "sluice_dead_letters_total", dimensions: [("function", function)])
        lag = Gauge(label: "sluice_stream_lag", dimensions: [("function", function)])
        pending = Gauge(label: "sluice_stream_pending", dimensions: [("function", function)])
    }

    /// Records one invocation and its outcomes.
    public func recordInvocation(viaStream: Bool, duration elapsed: Duration, outcomes list: [Outcome]) {
        (viaStream ? streamInvocations : httpInvocations).increment()
        duration.recordNanoseconds(elapsed.nanoseconds)
        var counts: [Outcome.Kind: Int] = [:]
        for outcome in list { counts[outcome.kind, default: 0] += 1 }
        for (kind, count) in counts { outcomes[kind]?.increment(by: count) }
    }

    /// Records a retry.
    public func recordRetry() { retries.increment() }

    /// Records a chunk sent to the dead-letter stream.
    public func recordDeadLetter() { deadLetters.increment() }

    /// Records the consumer group's lag and pending count.
    public func recordStreamState(lag: Int, pending: Int) {
        self.lag.record(lag)
        self.pending.record(pending)
    }
}
