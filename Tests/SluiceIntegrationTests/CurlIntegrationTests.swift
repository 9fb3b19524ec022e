import Foundation
@testable import SluiceNotify
import Testing

/// The libcurl wrapper against real servers: an aiosmtpd sink for SMTP (without STARTTLS, and
/// with it and a certificate made here), the tests' webhook receiver for HTTP, a closed port.
@Suite("libcurl", .serialized)
struct CurlIntegrationTests {
    /// A free TCP port on 127.0.0.1.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func python() throws -> String {
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw IntegrationSetupError("SLUICE_PYTHON is not set: run the suite with `make test` (scripts/python-tools.sh installs aiosmtpd)")
        }
        return python
    }

    /// A temporary folder, removed by the caller.
    static func folder() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    /// Starts `executable arguments` with its output discarded.
    static func start(_ executable: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Ends a server `start` started: SIGKILL, as it inherits the test thread's blocked signals
    /// (a SIGTERM would wait, blocked, and the server outlive the suite).
    static func stop(_ process: Process) {
        kill(process.processIdentifier, SIGKILL)
    }

    /// Runs `body` until it stops failing with "could not connect" (a server still starting).
    @discardableResult
    static func whenListening<T>(_ body: () async throws -> T) async throws -> T {
        for _ in 0..<100 {
            do {
                return try await body()
            } catch let error as CurlError where error.code == 7 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        return try await body()
    }

    static let message = Array("From: a@example.test\r\nTo: b@example.test\r\nSubject: test\r\n\r\nsummary from libcurl\r\n".utf8)

    @Test func mailReachesTheSinkAndRequiredStartTLSIsNeverSkipped() async throws {
        let directory = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = Self.freePort(), maildir = "\(directory)/maildir", url = "smtp://127.0.0.1:\(port)"
        let sink = try Self.start(try Self.python(), ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "-c", "aiosmtpd.handlers.Mailbox", maildir])
        defer { Self.stop(sink) }
        try await Self.whenListening {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test", "c@example.test"], message: Self.message,
                                    tls: .off, timeout: .seconds(5))
        }
        // STARTTLS when offered: this sink offers none, so the mail goes in clear.
        try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: Self.message, tls: .opportunistic, timeout: .seconds(5))
        // Demanded, it is never skipped: libcurl refuses (CURLE_USE_SSL_FAILED) and nothing is sent.
        let refused = await #expect(throws: CurlError.self) {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: Self.message, tls: .required, timeout: .seconds(5))
        }
        #expect(refused?.code == 64, "\(String(describing: refused))")
        #expect(refused?.isTransient == false)
        let delivered = try FileManager.default.contentsOfDirectory(atPath: "\(maildir)/new")
        #expect(delivered.count == 2)
        let first = try String(contentsOfFile: "\(maildir)/new/\(delivered[0])", encoding: .utf8)
        #expect(first.contains("summary from libcurl"))
        #expect(first.contains("Subject: test"))
    }

    /// STARTTLS against a sink that offers and requires it (aiosmtpd with a certificate for
    /// 127.0.0.1, made here): the mail goes over TLS when the certificate is checked against
    /// its CA, and is refused when it is checked against the system's CAs.
    @Test func startTLSIsUsedAndTheCertificateChecked() async throws {
        let directory = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let openssl = try Self.start("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "\(directory)/key.pem", "-out", "\(directory)/cert.pem",
        ])
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0, "openssl could not make a certificate")
        let port = Self.freePort(), maildir = "\(directory)/maildir", url = "smtp://127.0.0.1:\(port)"
        let sink = try Self.start(try Self.python(), [
            "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "--tlscert", "\(directory)/cert.pem", "--tlskey", "\(directory)/key.pem",
            "-c", "aiosmtpd.handlers.Mailbox", maildir,
        ])
        defer { Self.stop(sink) }
        try await Self.whenListening {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: Self.message, tls: .required,
                                    timeout: .seconds(5), caFile: "\(directory)/cert.pem")
        }
        // Checked against the system's CAs, the self-made certificate is refused.
        let refused = await #expect(throws: CurlError.self) {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: Self.message, tls: .required, timeout: .seconds(5))
        }
        #expect(refused?.code == 60, "\(String(describing: refused))")  // CURLE_PEER_FAILED_VERIFICATION
        let delivered = try FileManager.default.contentsOfDirectory(atPath: "\(maildir)/new")
        #expect(delivered.count == 1)
        #expect(try String(contentsOfFile: "\(maildir)/new/\(delivered[0])", encoding: .utf8).contains("summary from libcurl"))
    }

    /// POSTs reach the address a name is pinned to (what notify does with a checked callback
    /// host), and a redirect is answered, never followed.
    @Test func pinnedNamesAreUsedAndRedirectsNotFollowed() async throws {
        let directory = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("tools").path
        let port = Self.freePort(), log = "\(directory)/received.jsonl"
        let receiver = try Self.start(try Self.python(), ["\(root)/webhook_receiver.py", String(port), log])
        defer { Self.stop(receiver) }
        let body = Array(#"{"a":1}"#.utf8)
        // A name no resolver knows, pinned to the receiver.
        let answer = try await Self.whenListening {
            try await Curl.post(url: "http://callback.invalid:\(port)/hook", headers: ["Content-Type: application/json"], body: body,
                                         timeout: .seconds(5), resolve: ["callback.invalid:\(port):127.0.0.1"])
        }
        #expect(answer.status == 200)
        #expect(answer.body == Array("ok".utf8))
        // Unpinned, the name does not resolve.
        let unresolved = await #expect(throws: CurlError.self) {
            try await Curl.post(url: "http://callback.invalid:\(port)/hook", headers: [], body: body, timeout: .seconds(5))
        }
        #expect(unresolved?.code == 6, "\(String(describing: unresolved))")  // CURLE_COULDNT_RESOLVE_HOST
        // A redirect is the answer.
        let redirected = try await Curl.post(url: "http://127.0.0.1:\(port)/redirect", headers: [], body: body, timeout: .seconds(5))
        #expect(redirected.status == 302)
        let paths = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }.compactMap { $0["path"] as? String }
        #expect(paths == ["/hook", "/redirect"], "the redirect to /hook was not followed")
    }

    /// The outbound policy in front of libcurl: a loopback spelling is refused before anything
    /// is sent, an allowed host's redirect is answered and not followed.
    @Test func theOutboundPolicySendsNothingToLoopbackAndFollowsNoRedirect() async throws {
        let directory = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("tools").path
        let port = Self.freePort(), log = "\(directory)/received.jsonl"
        let receiver = try Self.start(try Self.python(), ["\(root)/webhook_receiver.py", String(port), log])
        defer { Self.stop(receiver) }
        let body = Array(#"{"a":1}"#.utf8)
        let policy = OutboundPolicy(allowedHosts: ["127.0.0.1:\(port)"])
        let redirected = try await Self.whenListening {
            try await policy.post("http://127.0.0.1:\(port)/redirect", headers: [], body: body, timeout: .seconds(5))
        }
        #expect(redirected.status == 302)
        for spelling in ["127.1", "2130706433", "0x7f.1", "0177.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0"] {
            await #expect(throws: OutboundPolicy.Refusal.privateAddress, "\(spelling)") {
                try await policy.post("http://\(spelling):\(port)/hook", headers: [], body: body, timeout: .seconds(5))
            }
        }
        let mail = OutboundPolicy(allowedHosts: ["127.0.0.1:\(port)"], schemes: ["smtp", "smtps"])
        await #expect(throws: OutboundPolicy.Refusal.privateAddress) {
            try await mail.sendMail("smtp://127.1:\(port)", from: "a@example.test", to: ["b@example.test"], message: Self.message, tls: .off,
                                    timeout: .seconds(5))
        }
        let paths = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }.compactMap { $0["path"] as? String }
        #expect(paths == ["/redirect"], "only the allowed request was sent, and its redirect not followed")
    }

    @Test func aClosedPortIsATransientError() async throws {
        let port = Self.freePort()
        let error = await #expect(throws: CurlError.self) {
            try await Curl.post(url: "http://127.0.0.1:\(port)/x", headers: [], body: Array("{}".utf8), timeout: .seconds(2))
        }
        #expect(error?.code == 7, "\(String(describing: error))")
        #expect(error?.isTransient == true)
        #expect(error?.description.contains("127.0.0.1") == false, "errors carry no URL")
    }
}
