/// What a function decided for one event.
public enum Outcome: Sendable, Hashable {
    /// Pass the (possibly changed) event on. `output` names one of the manifest's outputs;
    /// `nil` means every declared output (none, for a sink).
    case forward(Event, output: String? = nil)
    /// Drop the event on purpose, with a reason code (`duplicate`, `stale`, `filtered`, …).
    case drop(reason: String)
    /// Set the event aside as malformed, with a reason code, the raw event, and the field at
    /// fault when there is one (`amount`, `metadata.timestamp`).
    case quarantine(reason: String, event: Event, field: String? = nil)

    /// The outcome's kind, as used in metrics labels and job counters.
    public var kind: Kind {
        switch self {
        case .forward: .forward
        case .drop: .drop
        case .quarantine: .quarantine
        }
    }

    /// The three kinds of outcome.
    public enum Kind: String, Sendable, CaseIterable {
        case forward, drop, quarantine
    }
}

extension Outcome {
    /// Forward to every declared output.
    public static func forward(_ event: Event) -> Outcome { .forward(event, output: nil) }
}
