/// A manifest that cannot be used, naming the file and the key at fault.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable {
        case unreadable = "manifest_unreadable"
        case syntax = "manifest_syntax"
        case unknownKey = "manifest_unknown_key"
        case missingField = "manifest_missing_field"
        case badDuration = "manifest_bad_duration"
        case badValue = "manifest_bad_value"
        case unknownFunction = "manifest_unknown_function"
    }

    /// What is wrong.
    public var code: Code
    /// The manifest file.
    public var file: String
    /// The dotted key at fault (`retry.max_backoff`), empty for the whole file.
    public var key: String
    /// The explanation.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, file: String, key: String, message: String) {
        self.code = code
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        key.isEmpty ? "\(file): \(message)" : "\(file): \(key): \(message)"
    }
}
