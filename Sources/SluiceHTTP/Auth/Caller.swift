import Sluice

/// The caller a function's handler may act on: what ``CallerMiddleware`` verified, found in
/// ``SluiceRequestContext/caller``.
public struct Caller: Sendable, Equatable {
    /// The verified subject.
    public var subject: String
    /// The verified roles.
    public var roles: Set<String>

    public init(subject: String, roles: Set<String>) {
        self.subject = subject
        self.roles = roles
    }

    /// Whether the caller holds `role`.
    public func has(_ role: String) -> Bool { roles.contains(role) }

    /// The fixed-size key under which rows record their creator: the SHA-256 of the subject,
    /// hex (a subject may be an e-mail address; the key compares by equality and reveals nothing).
    public var ownerKey: String { SHA256.hex(subject.utf8) }

    /// Whether `name` is a role name the gateway accepts: 1 to 64 of `a-z`, `0-9`, `_`, `.`, `-`.
    /// No separator of any list form (`,`, space, `;`, `"`) can be part of one.
    public static func isValidRole(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
        }
    }
}
