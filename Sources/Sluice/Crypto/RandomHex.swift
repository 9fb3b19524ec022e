/// Random lowercase hex from the system's generator (getrandom on Linux): trace and span ids,
/// bearer tokens.
public enum RandomHex {
    /// `words` × 16 hex digits, none of the words zero (a W3C trace or span id may not be all zeros).
    public static func make(words: Int) -> String {
        (0..<words).map { _ in
            let text = String(UInt64.random(in: 1...UInt64.max), radix: 16)
            return String(repeating: "0", count: 16 - text.count) + text
        }.joined()
    }
}
