/// Small text helpers for header values and CSV cells.
extension String {
    /// The string without leading and trailing spaces and tabs (what HTTP headers and CSV
    /// cells allow around a value).
    public func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }

    /// The media type of a `Content-Type` value: what comes before its parameters
    /// (`; charset=utf-8`), without spaces, lowercased.
    public var mediaType: String {
        (split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "").trimmingSpaces().lowercased()
    }
}
