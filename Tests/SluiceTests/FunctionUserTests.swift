import Foundation
import Logging
import Testing
@testable import Sluice
@testable import SluiceFunctions

/// The user a function's process runs as, and what its environment holds.
@Suite struct FunctionUserTests {
    @Test func aRootSluiceRunsFunctionsAsNobodyByDefault() throws {
        let user = try #require(try FunctionUser.resolve(nil, currentUID: 0))
        #expect(user.uid == 65534 && user.name == "nobody")
        #expect(try FunctionUser.resolve("", currentUID: 0)?.uid == 65534)
    }

    @Test func aSettingNamesAUserByNameOrNumber() throws {
        #expect(try FunctionUser.resolve("1234", currentUID: 0) == FunctionUser(uid: 1234, gid: 1234, name: "1234"))
        #expect(try FunctionUser.resolve("1234:99", currentUID: 0) == FunctionUser(uid: 1234, gid: 99, name: "1234:99"))
        #expect(try FunctionUser.resolve("nobody", currentUID: 0)?.uid == 65534)
        #expect(try FunctionUser.resolve("same", currentUID: 0) == nil)
    }

    @Test func rootAnUnknownNameAndASwitchWithoutRootAreRefused() throws {
        #expect(throws: FunctionUserError.self) { try FunctionUser.resolve("0", currentUID: 0) }
        #expect(throws: FunctionUserError.self) { try FunctionUser.resolve("root", currentUID: 0) }
        #expect(throws: FunctionUserError.self) { try FunctionUser.resolve("no-such-user-here", currentUID: 0) }
        #expect(throws: FunctionUserError.self) { try FunctionUser.resolve("1234", currentUID: 1000) }
        do {
            _ = try FunctionUser.resolve("1234", currentUID: 1000)
        } catch {
            #expect(error.code == "function_user_needs_root")
        }
        // Not root and not told otherwise: the process runs as Sluice's user.
        #expect(try FunctionUser.resolve(nil, currentUID: 1000) == nil)
        #expect(try FunctionUser.resolve("1000", currentUID: 1000) == nil)
    }

    /// The mode bits decide, for the owner, the user's group and others, and every folder above
    /// the path must let the user through.
    @Test func accessIsJudgedByTheModeBitsOfThePathAndEveryFolderAboveIt() throws {
        let folder = NSTemporaryDirectory() + "function-user-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder + "/inner", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let stranger = FunctionUser(uid: 4_000_001, gid: 4_000_001, name: "stranger")
        chmod(folder, 0o755)
        chmod(folder + "/inner", 0o755)
        #expect(stranger.may(R_OK | X_OK, folder + "/inner"))
        #expect(!stranger.may(W_OK, folder + "/inner"))
        chmod(folder, 0o711)
        #expect(stranger.may(R_OK | X_OK, folder + "/inner"), "a folder above needs only x")
        #expect(!stranger.may(R_OK, folder))
        chmod(folder, 0o700)
        #expect(!stranger.may(R_OK | X_OK, folder + "/inner"))
        let owner = FunctionUser(uid: getuid(), gid: getgid(), name: "owner")
        #expect(owner.may(R_OK | W_OK | X_OK, folder + "/inner"))
        #expect(stranger.reachable(path: "\(folder)/inner:/usr/bin:/bin") == "/usr/bin:/bin")
    }

    /// The process's environment holds what docs/function-protocol.md lists: its private folder
    /// as TMPDIR and HOME, no variable of Sluice's but PATH and the locale.
    @Test func theEnvironmentHoldsTheDocumentedVariablesOnly() {
        let runtime = FunctionRuntime(command: ["python3", "handler.py"], directory: "/tmp")
        var manifest = Manifest(name: "f", handler: "process", triggers: [.stream("f")])
        manifest.environment = ["MODEL": "v3"]
        let supervisor = ProcessSupervisor(manifest: manifest, runtime: runtime, logger: Logger(label: "test"))
        let environment = supervisor.processEnvironment(port: 9101, folder: "/tmp/private")
        let allowed: Set<String> = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONUNBUFFERED", "PORT",
                                    "SLUICE_FUNCTION_NAME", "SLUICE_FUNCTION_TOKEN", "MODEL"]
        #expect(Set(environment.keys).isSubset(of: allowed), "\(Set(environment.keys).subtracting(allowed))")
        #expect(environment["TMPDIR"] == "/tmp/private" && environment["HOME"] == "/tmp/private")
        #expect(environment["PORT"] == "9101" && environment["SLUICE_FUNCTION_TOKEN"] == supervisor.token && environment["MODEL"] == "v3")
        let build = supervisor.processEnvironment(port: nil, folder: "/tmp/private")
        #expect(build["PORT"] == nil && build["SLUICE_FUNCTION_TOKEN"] == nil)
    }
}
