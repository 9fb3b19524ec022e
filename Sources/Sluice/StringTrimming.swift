extension String {
    /// The string without leading and trailing spaces and tabs (what HTTP headers and CSV
    /// cells allow around a value).
    public func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
