import Foundation

/// A `sluice` process started by a test, with its output in a log file.
final class SluiceProcess: @unchecked Sendable {
    // The Process is only touched from the test's own task.
    let process = Process()
    let name: String
    let port: Int
    let logPath: String

    /// Starts `sluice ARGUMENTS` with `environment` added to the test's environment.
    init(binary: String, arguments: [String], environment: [String: String], name: String, port: Int, logDirectory: String) throws {
        self.name = name
        self.port = port
        logPath = "\(logDirectory)/\(name)-\(port)-\(UUID().uuidString.prefix(6)).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    /// `sluice serve NAME --port PORT`.
    static func serve(_ name: String, port: Int, environment: [String: String], in directory: String, binary: String) throws -> SluiceProcess {
        try SluiceProcess(binary: binary, arguments: ["serve", name, "--port", "\(port)", "--host", "127.0.0.1"],
                          environment: environment, name: name, port: port, logDirectory: directory)
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Waits until `/health/ready` answers 200.
    func waitReady(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestSetupError("\(name) exited with status \(process.terminationStatus) before it was ready:\n\(tail())")
            }
            if let response = try? await HTTP.request("GET", "http://127.0.0.1:\(port)/health/ready"), response.status == 200 {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError("\(name) was not ready within \(timeout):\n\(tail())")
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit; answers its status, or nil on timeout.
    func waitExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Stops the process (SIGKILL if it does not end on SIGTERM within 10 s).
    func stop() async {
        guard process.isRunning else { return }
        signal(SIGTERM)
        if await waitExit(timeout: .seconds(10)) == nil {
            signal(SIGKILL)
            _ = await waitExit(timeout: .seconds(5))
        }
    }

    /// The last lines of the process's log.
    func tail(_ lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// Runs a command to completion and answers its status and output.
func runCommand(_ binary: String, _ arguments: [String], environment: [String: String] = [:], input: Data? = nil) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    if let input {
        let pipe = Pipe()
        process.standardInput = pipe
        try process.run()
        pipe.fileHandleForWriting.write(input)
        try pipe.fileHandleForWriting.close()
    } else {
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let error = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
}

/// A free TCP port on 127.0.0.1.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A fresh temporary directory.
func makeTemporaryDirectory(_ prefix: String) throws -> String {
    let path = NSTemporaryDirectory() + "sluice-\(prefix)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
