import Foundation

/// The user a function's process (and its `runtime.build`) runs as: another one than Sluice's
/// when Sluice runs as root, so that the process can read none of Sluice's files (`.sluice/`),
/// its `/proc` entries or its memory.
///
/// `SLUICE_FUNCTION_USER` names it: a user name, `UID` or `UID:GID`. Unset, a root Sluice uses
/// `nobody` (65534 when the system has no such user); a Sluice that is not root cannot switch and
/// runs the process as itself. `same` keeps Sluice's own user (and drops this wall).
public struct FunctionUser: Sendable, Equatable, CustomStringConvertible {
    public let uid: uid_t
    public let gid: gid_t
    /// The name it was given by (a number when it was given as one).
    public let name: String

    public init(uid: uid_t, gid: gid_t, name: String) {
        self.uid = uid
        self.gid = gid
        self.name = name
    }

    public var description: String { "\(name) (\(uid):\(gid))" }

    /// The user a setting names, or `nil` to run the process as Sluice's own user.
    /// - Parameters:
    ///   - setting: `SLUICE_FUNCTION_USER`.
    ///   - currentUID: Sluice's user (`getuid()`).
    /// - Throws: ``FunctionUserError`` `function_user_unknown` for a name the system does not
    ///   know, `function_user_root` for uid 0, `function_user_needs_root` for another user than
    ///   Sluice's when Sluice is not root.
    public static func resolve(_ setting: String?, currentUID: uid_t = getuid()) throws(FunctionUserError) -> FunctionUser? {
        let text = (setting ?? "").trimmingCharacters(in: .whitespaces)
        if text == "same" { return nil }
        let user: FunctionUser
        if text.isEmpty {
            guard currentUID == 0 else { return nil }
            user = lookUp("nobody") ?? FunctionUser(uid: 65534, gid: 65534, name: "nobody")
        } else if let parsed = numeric(text) {
            user = parsed
        } else if let found = lookUp(text) {
            user = found
        } else {
            throw FunctionUserError(code: "function_user_unknown", message: "SLUICE_FUNCTION_USER names no user of this system")
        }
        if user.uid == 0 {
            throw FunctionUserError(code: "function_user_root", message: "SLUICE_FUNCTION_USER may not be root: the function would hold every key")
        }
        if currentUID != 0 {
            guard user.uid == currentUID else {
                throw FunctionUserError(code: "function_user_needs_root", message: "only a Sluice that runs as root can start functions as another user")
            }
            return nil
        }
        return user
    }

    /// `UID` or `UID:GID` (the group defaults to the uid's number).
    static func numeric(_ text: String) -> FunctionUser? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let uid = UInt32(parts[0]) else { return nil }
        let gid = parts.count == 2 ? UInt32(parts[1]) : uid
        guard let gid else { return nil }
        return FunctionUser(uid: uid, gid: gid, name: text)
    }

    static func lookUp(_ name: String) -> FunctionUser? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return FunctionUser(uid: entry.pw_uid, gid: entry.pw_gid, name: name)
    }

    /// Whether this user may open `path` with the access `mode` asks (`R_OK`, `W_OK`, `X_OK`,
    /// combined) and pass through every folder above it, judged by the mode bits (owner, then
    /// the user's one group, then others; no supplementary groups: the process has none).
    public func may(_ mode: Int32, _ path: String) -> Bool {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        var folder = ""
        for component in absolute.split(separator: "/").dropLast() {
            folder += "/" + component
            guard allows(X_OK, folder) else { return false }
        }
        return allows(mode, absolute)
    }

    private func allows(_ mode: Int32, _ path: String) -> Bool {
        var status = stat()
        guard stat(path, &status) == 0 else { return false }
        let bits: mode_t
        if status.st_uid == uid { bits = (status.st_mode >> 6) & 7 } else if status.st_gid == gid { bits = (status.st_mode >> 3) & 7 } else { bits = status.st_mode & 7 }
        return (mode_t(mode) & 7) & ~bits == 0
    }

    /// `PATH` with the folders this user cannot search left out (a root's `/root/.pyenv/shims`
    /// would otherwise shadow `/usr/bin/python3` with a "permission denied").
    public func reachable(path: String) -> String {
        path.split(separator: ":").filter { may(R_OK | X_OK, String($0)) }.joined(separator: ":")
    }
}

/// Why ``FunctionUser/resolve(_:currentUID:)`` refused a setting.
public struct FunctionUserError: Error, CustomStringConvertible {
    /// `function_user_unknown`, `function_user_root` or `function_user_needs_root`.
    public let code: String
    public let message: String
    public var description: String { "\(code): \(message)" }
}
