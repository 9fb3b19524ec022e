import Foundation
import SluiceNotify
import Testing

/// The libcurl wrapper against real servers: an aiosmtpd sink for SMTP (with and without
/// STARTTLS demanded) and a closed port for HTTP.
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

    @Test func mailReachesTheSinkAndRequiredStartTLSIsNeverSkipped() async throws {
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw IntegrationSetupError("SLUICE_PYTHON is not set: run the suite with `make test` (scripts/python-tools.sh installs aiosmtpd)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = Self.freePort(), maildir = "\(directory)/maildir"
        let sink = Process()
        sink.executableURL = URL(fileURLWithPath: python)
        sink.arguments = ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "-c", "aiosmtpd.handlers.Mailbox", maildir]
        sink.standardOutput = FileHandle.nullDevice
        sink.standardError = FileHandle.nullDevice
        try sink.run()
        defer { sink.terminate() }
        let message = Array("From: a@example.test\r\nTo: b@example.test\r\nSubject: test\r\n\r\nhello from libcurl\r\n".utf8)
        let url = "smtp://127.0.0.1:\(port)"
        // The sink takes a moment to listen.
        var sent = false
        for _ in 0..<100 where !sent {
            do {
                try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test", "c@example.test"], message: message, tls: .off, timeout: .seconds(5))
                sent = true
            } catch let error as CurlError where error.code == 7 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(sent)
        // STARTTLS when offered: this sink offers none, so the mail goes in clear.
        try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: message, tls: .opportunistic, timeout: .seconds(5))
        // Demanded, it is never skipped: libcurl refuses (CURLE_USE_SSL_FAILED) and nothing is sent.
        await #expect(throws: CurlError.self) {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: message, tls: .required, timeout: .seconds(5))
        }
        do {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: message, tls: .required, timeout: .seconds(5))
        } catch let error as CurlError {
            #expect(error.code == 64, "\(error)")
            #expect(!error.isTransient)
        }
        let delivered = try FileManager.default.contentsOfDirectory(atPath: "\(maildir)/new")
        #expect(delivered.count == 2)
        let first = try String(contentsOfFile: "\(maildir)/new/\(delivered[0])", encoding: .utf8)
        #expect(first.contains("hello from libcurl"))
        #expect(first.contains("Subject: test"))
    }

    /// STARTTLS against a sink that offers it (aiosmtpd with a certificate for 127.0.0.1, made
    /// here): the mail goes over TLS when the certificate is checked against its CA, and is
    /// refused when it is checked against the system's CAs.
    @Test func startTLSIsUsedAndTheCertificateChecked() async throws {
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw IntegrationSetupError("SLUICE_PYTHON is not set: run the suite with `make test` (scripts/python-tools.sh installs aiosmtpd)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curl-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "\(directory)/key.pem", "-out", "\(directory)/cert.pem"]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0, "openssl could not make a certificate")
        let port = Self.freePort(), maildir = "\(directory)/maildir"
        let sink = Process()
        sink.executableURL = URL(fileURLWithPath: python)
        sink.arguments = ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(port)", "--tlscert", "\(directory)/cert.pem", "--tlskey", "\(directory)/key.pem",
                          "-c", "aiosmtpd.handlers.Mailbox", maildir]
        sink.standardOutput = FileHandle.nullDevice
        sink.standardError = FileHandle.nullDevice
        try sink.run()
        defer { sink.terminate() }
        let message = Array("From: a@example.test\r\nTo: b@example.test\r\nSubject: over tls\r\n\r\nsecret summary\r\n".utf8)
        let url = "smtp://127.0.0.1:\(port)"
        var sent = false
        for _ in 0..<100 where !sent {
            do {
                try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: message, tls: .required,
                                        timeout: .seconds(5), caFile: "\(directory)/cert.pem")
                sent = true
            } catch let error as CurlError where error.code == 7 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(sent)
        // Checked against the system's CAs, the self-made certificate is refused.
        do {
            try await Curl.sendMail(url: url, from: "a@example.test", to: ["b@example.test"], message: message, tls: .required, timeout: .seconds(5))
            Issue.record("a certificate no known CA signed was accepted")
        } catch let error as CurlError {
            #expect(error.code == 60, "\(error)")  // CURLE_PEER_FAILED_VERIFICATION
        }
        let delivered = try FileManager.default.contentsOfDirectory(atPath: "\(maildir)/new")
        #expect(delivered.count == 1)
        #expect(try String(contentsOfFile: "\(maildir)/new/\(delivered[0])", encoding: .utf8).contains("secret summary"))
    }

    @Test func aClosedPortIsATransientError() async throws {
        let port = Self.freePort()
        do {
            _ = try await Curl.post(url: "http://127.0.0.1:\(port)/x", headers: [], body: Array("{}".utf8), timeout: .seconds(2))
            Issue.record("a POST to a closed port succeeded")
        } catch let error as CurlError {
            #expect(error.code == 7, "\(error)")
            #expect(error.isTransient)
            #expect(!error.description.contains("127.0.0.1"), "errors carry no URL")
        }
    }
}
