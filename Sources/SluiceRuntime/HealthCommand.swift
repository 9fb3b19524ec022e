import ArgumentParser
import Foundation

/// The container's health check: the image has no curl, so `sluice` asks itself.
struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Exit 0 when the local function answers 200 on a health route (the container's HEALTHCHECK).")

    @Option(help: "The port the function listens on.")
    var port: Int = 8080

    @Option(help: "The route to ask: /health/live or /health/ready.")
    var path: String = "/health/live"

    func run() throws {
        guard let status = Self.status(port: port, path: path) else {
            throw CommandFailure("no answer on 127.0.0.1:\(port)\(path)")
        }
        guard status == 200 else { throw CommandFailure("\(path) answered \(status)") }
    }

    /// The status code of `GET path` on 127.0.0.1:`port`, or nil when nothing answers within 2 s.
    static func status(port: Int, path: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard send(fd, request, request.count, 0) == request.count else { return nil }
        let capacity = 64
        var buffer = [UInt8](repeating: 0, count: capacity)
        var filled = 0
        // "HTTP/1.1 200 OK": the code is the second word of the first line.
        while filled < capacity {
            let offset = filled
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, capacity - offset, 0) }
            if n <= 0 { break }
            filled += n
            if buffer[..<filled].contains(UInt8(ascii: "\n")) { break }
        }
        let line = String(decoding: buffer[..<filled], as: UTF8.self)
        let words = line.split(separator: " ", maxSplits: 2)
        guard words.count >= 2, words[0].hasPrefix("HTTP/") else { return nil }
        return Int(words[1])
    }
}
