/// An error a function throws to fail a whole chunk.
///
/// A retryable error is retried with backoff up to the manifest's `retry.max_attempts`, then
/// dead-lettered; a permanent error is dead-lettered at once. Any other error a function
/// throws counts as retryable: an unexpected failure is more often transient than not.
public struct FunctionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Whether trying again can help.
    public enum Kind: String, Sendable, Hashable {
        case retryable, permanent
    }

    /// Retryable or permanent.
    public var kind: Kind
    /// A stable machine-readable code (`lookup_unavailable`, `bad_chunk`, …).
    public var code: String
    /// A human-readable message. Must not contain personal data or secrets.
    public var message: String

    /// Creates an error.
    public init(_ kind: Kind, code: String, message: String) {
        self.kind = kind
        self.code = code
        self.message = message
    }

    /// A retryable error.
    public static func retryable(_ code: String, _ message: String) -> FunctionError {
        FunctionError(.retryable, code: code, message: message)
    }

    /// A permanent error.
    public static func permanent(_ code: String, _ message: String) -> FunctionError {
        FunctionError(.permanent, code: code, message: message)
    }

    public var description: String { "\(kind.rawValue) \(code): \(message)" }
}

extension FunctionError {
    /// Classifies any error thrown by a handler: `FunctionError`s keep their kind, anything
    /// else becomes retryable with code `unexpected_error` and a description that carries only
    /// the error's type name (descriptions of foreign errors may hold personal data).
    public static func classify(_ error: any Error) -> FunctionError {
        if let error = error as? FunctionError { return error }
        return .retryable("unexpected_error", "\(type(of: error))")
    }
}
