import Foundation

/// One HTTP/1.1 connection written byte by byte, for what URLSession will not send: no
/// `Content-Type`, headers of 100 KB, a body of a gigabyte made as it is sent, a request
/// dribbled out a byte at a time. Blocking socket calls, run on a thread of their own
/// (``RawHTTP/run(_:)``) so that the test's tasks are not held up.
final class RawConnection: @unchecked Sendable {
    // Used by one thread at a time: the test hands the connection from call to call.
    private let fd: Int32
    private var received: [UInt8] = []

    struct Response: Sendable {
        let status: Int
        let headers: [String: String]
        let body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    init(port: Int, timeout: Duration = .seconds(120)) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw TestSetupError("connect to port \(port): errno \(errno)")
        }
        setTimeout(timeout)
    }

    deinit { close(fd) }

    /// Ends the connection both ways, as a client that goes away does.
    func disconnect() {
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// How long one read or write may block.
    func setTimeout(_ timeout: Duration) {
        let (seconds, attoseconds) = timeout.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes all of `bytes`; false when the peer has closed the connection (or a write timed out).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Reads more bytes into the buffer; false at the end of the stream, an error or a timeout.
    private func fill() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return false }
            received.append(contentsOf: buffer[..<count])
            return true
        }
    }

    /// Reads one response (its head, then `Content-Length` bytes or chunks); nil when the
    /// connection ends or times out first.
    func readResponse() -> Response? {
        var headEnd: Int?
        while headEnd == nil {
            headEnd = Self.find([13, 10, 13, 10], in: received)
            if headEnd == nil, !fill() { return nil }
        }
        let head = String(decoding: received[..<headEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        received.removeFirst(headEnd! + 4)
        var body: [UInt8] = []
        if let length = headers["content-length"].flatMap(Int.init) {
            while received.count < length { guard fill() else { return nil } }
            body = Array(received[..<length])
            received.removeFirst(length)
        } else if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                var lineEnd = Self.find([13, 10], in: received)
                while lineEnd == nil { guard fill() else { return nil }; lineEnd = Self.find([13, 10], in: received) }
                let sizeText = String(decoding: received[..<lineEnd!], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
                guard let size = Int(sizeText, radix: 16) else { return nil }
                received.removeFirst(lineEnd! + 2)
                while received.count < size + 2 { guard fill() else { return nil } }
                body += received[..<size]
                received.removeFirst(size + 2)
                if size == 0 { break }
            }
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// Whether the peer closes the connection within `timeout` (reads and drops what it sends
    /// meanwhile).
    func closedByPeer(within timeout: Duration) -> Bool {
        setTimeout(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR { continue }
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }
}

enum RawHTTP {
    /// Runs blocking socket work on a thread of its own.
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Sends one request (head and body as given, nothing added) and reads the answer.
    static func exchange(port: Int, _ request: [UInt8]) async throws -> RawConnection.Response {
        try await run {
            let connection = try RawConnection(port: port)
            _ = connection.send(request)
            guard let response = connection.readResponse() else { throw TestSetupError("no answer from port \(port)") }
            return response
        }
    }

    /// A request's bytes: the request line, `headers` as given, `Content-Length` when
    /// `body` is given and no length or transfer encoding is named, then the body.
    /// The bytes of a request; like ``HTTP/request(_:_:body:headers:)`` it carries the gateway's
    /// assertion for itself unless `headers` name one.
    static func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if !headers.contains(where: { $0.0.lowercased() == TestCaller.header.lowercased() }) {
            head += "\(TestCaller.header): \(TestCaller.assertion(method: method, url: "http://127.0.0.1\(path)"))\r\n"
        }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let named = headers.contains { ["content-length", "transfer-encoding"].contains($0.0.lowercased()) }
        if let body, !named { head += "Content-Length: \(body.count)\r\n" }
        return Array((head + "\r\n").utf8) + (body ?? [])
    }
}
