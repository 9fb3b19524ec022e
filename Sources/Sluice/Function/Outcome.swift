/// What a function decided for one event.
public enum Outcome: Sendable, Hashable {
    /// Pass the (possibly changed) event on. `output` names one of the manifest's outputs;
    /// `nil` means every declared output (none, for a sink).
    case forward(Event, output: String? = nil)
    /// Pass several events on in its place (one row becomes its line items, say), in order, to
    /// `output` or every declared output. The job counts the events added (`added`: their number
    /// less one) and waits for each of them.
    case fanOut([Event], output: String? = nil)
    /// Drop the event on purpose, with a reason code (`duplicate`, `stale`, `filtered`, …).
    case drop(reason: String)
    /// Set the event aside as malformed, with a reason code, the raw event, and the field at
    /// fault when there is one (`amount`, `metadata.timestamp`).
    case quarantine(reason: String, event: Event, field: String? = nil)

    /// The outcome's kind, as used in metrics labels and job counters.
    public var kind: Kind {
        switch self {
        case .forward, .fanOut: .forward
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
    /// The events this outcome passes on (none for a drop or a quarantine).
    public var forwardedEvents: [Event] {
        switch self {
        case .forward(let event, _): [event]
        case .fanOut(let events, _): events
        case .drop, .quarantine: []
        }
    }

    /// Keeps only the forwarded events `keep` accepts: a forward whose event is refused, or a
    /// fan-out whose every event is, becomes a drop with `reason`; a fan-out keeps the rest.
    public mutating func keepForwarded(where keep: (Event) throws -> Bool, otherwise reason: String) rethrows {
        switch self {
        case .forward(let event, _):
            if try !keep(event) { self = .drop(reason: reason) }
        case .fanOut(let events, let output):
            let kept = try events.filter(keep)
            if kept.isEmpty { self = .drop(reason: reason) } else if kept.count < events.count { self = .fanOut(kept, output: output) }
        case .drop, .quarantine:
            break
        }
    }

    /// Forward to every declared output.
    public static func forward(_ event: Event) -> Outcome { .forward(event, output: nil) }
}
