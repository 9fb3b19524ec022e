/// How one summary is answered: the range `[from, to)` cut into windows aligned to multiples
/// of the window length since the Unix epoch (the first and last may be cut short by `from`
/// and `to`), and each window into the pieces read from where they are cheapest: whole UTC
/// hours from the hour rollups, whole minutes from the minute rollups, and what is left (a
/// partial minute at either end, or a minute whose rollup must be counted again) from the
/// events themselves. Pure logic, so that it is tested without a database.
struct SummaryPlan: Equatable {
    enum Piece: Equatable {
        /// The hour rollup starting at this Unix second.
        case hour(Int64)
        /// The minute rollup starting at this Unix second.
        case minute(Int64)
        /// Events with `event_time` in `[start, end)`, Unix milliseconds.
        case events(start: Int64, end: Int64)

        var isEvents: Bool {
            if case .events = self { return true }
            return false
        }
    }

    struct Window: Equatable {
        /// Unix seconds, a multiple of the window length.
        var start: Int64
        var pieces: [Piece]
    }

    var windows: [Window]

    /// `a / b` rounded down (towards minus infinity), `b > 0`.
    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// - Parameters:
    ///   - from, to: Unix milliseconds, `from < to`.
    ///   - window: the window length in seconds, a multiple of 60 that divides 86,400.
    ///   - stale: minutes (Unix seconds) whose rollups are not to be trusted.
    init(from: Int64, to: Int64, window: Int64, stale: Set<Int64>) {
        precondition(from < to && window % 60 == 0 && window > 0)
        let windowMs = window * 1000, minuteMs: Int64 = 60_000, hourMs: Int64 = 3_600_000
        func hourIsFresh(_ start: Int64) -> Bool {
            let second = start / 1000
            return !(0..<60).contains { stale.contains(second + Int64($0) * 60) }
        }
        var windows: [Window] = []
        var t = from
        while t < to {
            let windowStart = Self.floorDiv(t, windowMs) * windowMs
            let windowEnd = min(windowStart + windowMs, to)
            var pieces: [Piece] = []
            while t < windowEnd {
                if t % hourMs == 0 && t + hourMs <= windowEnd && hourIsFresh(t) {
                    pieces.append(.hour(t / 1000))
                    t += hourMs
                } else if t % minuteMs == 0 && t + minuteMs <= windowEnd && !stale.contains(t / 1000) {
                    pieces.append(.minute(t / 1000))
                    t += minuteMs
                } else {
                    let end = min((Self.floorDiv(t, minuteMs) + 1) * minuteMs, windowEnd)
                    if case .events(let start, let previousEnd)? = pieces.last, previousEnd == t {
                        pieces[pieces.count - 1] = .events(start: start, end: end)
                    } else {
                        pieces.append(.events(start: t, end: end))
                    }
                    t = end
                }
            }
            windows.append(Window(start: windowStart / 1000, pieces: pieces))
        }
        self.windows = windows
    }
}
