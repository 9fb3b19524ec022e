import CCurl
import Foundation
import NIOPosix

/// A failure of libcurl: its code and message. Never holds a URL (a Slack webhook URL is a secret).
public struct CurlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libcurl's `CURLcode`.
    public var code: Int
    /// `curl_easy_strerror` of the code, or ours.
    public var message: String

    /// Whether trying again may succeed: timeouts, refused or broken connections, DNS.
    public var isTransient: Bool {
        [Int(CURLE_OPERATION_TIMEDOUT.rawValue), Int(CURLE_COULDNT_CONNECT.rawValue), Int(CURLE_COULDNT_RESOLVE_HOST.rawValue),
         Int(CURLE_SEND_ERROR.rawValue), Int(CURLE_RECV_ERROR.rawValue), Int(CURLE_GOT_NOTHING.rawValue),
         Int(CURLE_PARTIAL_FILE.rawValue), Int(CURLE_SSL_CONNECT_ERROR.rawValue)].contains(code)
    }

    public var isTimeout: Bool { code == Int(CURLE_OPERATION_TIMEDOUT.rawValue) }

    public var description: String { "curl error \(code): \(message)" }

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    init(_ code: CURLcode) {
        self.code = Int(code.rawValue)
        self.message = String(cString: curl_easy_strerror(code))
    }
}

/// An HTTP answer: the status, `Retry-After` if given, and the start of the body.
public struct HTTPAnswer: Sendable, Equatable {
    public var status: Int
    public var retryAfter: String?
    public var body: [UInt8]
}

/// Blocking libcurl calls, one easy handle per call, run on NIO's blocking thread pool.
/// libcurl is initialised once per process, before the first handle. The calls are internal:
/// everything outside this module sends through ``OutboundPolicy``, which checks and pins
/// every address first.
public enum Curl {
    /// At most this much of an answer's body is kept (for error messages).
    static let bodyLimit = 4096

    private static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK

    /// POSTs `body` to `url`; answers whatever status the server gave. Redirects are not
    /// followed; only http and https are spoken; no proxy is used.
    /// - Parameter resolve: `host:port:address` entries pinning names to checked addresses.
    static func post(url: String, headers: [String], body: [UInt8], timeout: Duration, connectTimeout: Duration = .seconds(5),
                            resolve: [String] = []) async throws -> HTTPAnswer {
        try await NIOThreadPool.singleton.runIfActive {
            try postBlocking(url: url, headers: headers, body: body, timeout: timeout, connectTimeout: connectTimeout, resolve: resolve)
        }
    }

    /// Sends one message over SMTP (`smtp://` with STARTTLS as `tls` says, or `smtps://`).
    /// - Parameter caFile: a PEM bundle of the certificate authorities the server's certificate
    ///   is checked against, instead of the system's (a private CA).
    /// - Parameter resolve: `host:port:address` entries pinning names to checked addresses.
    static func sendMail(url: String, from: String, to: [String], message: [UInt8], tls: MailTLS, timeout: Duration,
                         caFile: String? = nil, resolve: [String] = []) async throws {
        try await NIOThreadPool.singleton.runIfActive {
            try sendMailBlocking(url: url, from: from, to: to, message: message, tls: tls, timeout: timeout, caFile: caFile, resolve: resolve)
        }
    }

    /// Whether SMTP upgrades to TLS with STARTTLS.
    public enum MailTLS: String, Sendable {
        /// Only over TLS: the server must offer STARTTLS.
        case required
        /// When the server offers it.
        case opportunistic
        /// Never (a local relay or test sink).
        case off
    }

    static func milliseconds(_ duration: Duration) -> Int {
        Int(duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    final class Sink {
        var body: [UInt8] = []
        var retryAfter: String?
    }

    final class Source {
        let bytes: [UInt8]
        var offset = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }

    static func check(_ code: CURLcode) throws(CurlError) {
        if code != CURLE_OK { throw CurlError(code) }
    }

    static func postBlocking(url: String, headers: [String], body: [UInt8], timeout: Duration, connectTimeout: Duration,
                             resolve: [String]) throws -> HTTPAnswer {
        guard initialized, let curl = curl_easy_init() else { throw CurlError(code: -1, message: "libcurl could not be initialised") }
        defer { curl_easy_cleanup(curl) }
        var list: UnsafeMutablePointer<curl_slist>?
        for header in headers { list = curl_slist_append(list, header) }
        defer { curl_slist_free_all(list) }
        var pins: UnsafeMutablePointer<curl_slist>?
        for entry in resolve { pins = curl_slist_append(pins, entry) }
        defer { curl_slist_free_all(pins) }
        let sink = Sink()
        let context = Unmanaged.passRetained(sink)
        defer { context.release() }

        try check(sluice_curl_setopt_string(curl, CURLOPT_URL, url))
        try check(sluice_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1))
        try check(sluice_curl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, "http,https"))
        try check(sluice_curl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 0))
        // No proxy from the environment (http_proxy, ALL_PROXY): it would resolve the name itself.
        try check(sluice_curl_setopt_string(curl, CURLOPT_PROXY, ""))
        try check(sluice_curl_setopt_long(curl, CURLOPT_TIMEOUT_MS, milliseconds(timeout)))
        try check(sluice_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(connectTimeout)))
        try check(sluice_curl_setopt_long(curl, CURLOPT_POST, 1))
        try check(sluice_curl_setopt_off(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
        // COPYPOSTFIELDS copies: the Swift buffer may go away after the call.
        let fields = body.isEmpty ? [0] : body
        try fields.withUnsafeBufferPointer { buffer throws(CurlError) in
            try check(sluice_curl_setopt_pointer(curl, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: buffer.baseAddress!)))
        }
        try check(sluice_curl_setopt_slist(curl, CURLOPT_HTTPHEADER, list))
        if pins != nil { try check(sluice_curl_setopt_slist(curl, CURLOPT_RESOLVE, pins)) }
        try check(sluice_curl_setopt_callback(curl, CURLOPT_WRITEFUNCTION, { buffer, size, count, context in
            let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
            let length = size * count
            if let buffer, sink.body.count < Curl.bodyLimit {
                let room = min(length, Curl.bodyLimit - sink.body.count)
                buffer.withMemoryRebound(to: UInt8.self, capacity: room) { sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: room)) }
            }
            return length
        }))
        try check(sluice_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, context.toOpaque()))
        try check(sluice_curl_setopt_callback(curl, CURLOPT_HEADERFUNCTION, { buffer, size, count, context in
            let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
            let length = size * count
            guard let buffer else { return length }
            let line = buffer.withMemoryRebound(to: UInt8.self, capacity: length) { String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self) }
            if line.lowercased().hasPrefix("retry-after:") {
                sink.retryAfter = line.dropFirst("retry-after:".count).trimmingCharacters(in: .whitespacesAndNewlines)
            } else if line.hasPrefix("HTTP/") {
                sink.retryAfter = nil  // a new response (after 100 Continue)
            }
            return length
        }))
        try check(sluice_curl_setopt_pointer(curl, CURLOPT_HEADERDATA, context.toOpaque()))
        try check(curl_easy_perform(curl))
        var status = 0
        try check(sluice_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status))
        return HTTPAnswer(status: status, retryAfter: sink.retryAfter, body: sink.body)
    }

    static func sendMailBlocking(url: String, from: String, to: [String], message: [UInt8], tls: MailTLS, timeout: Duration,
                                 caFile: String?, resolve: [String]) throws {
        guard initialized, let curl = curl_easy_init() else { throw CurlError(code: -1, message: "libcurl could not be initialised") }
        defer { curl_easy_cleanup(curl) }
        var recipients: UnsafeMutablePointer<curl_slist>?
        for address in to { recipients = curl_slist_append(recipients, "<\(address)>") }
        defer { curl_slist_free_all(recipients) }
        var pins: UnsafeMutablePointer<curl_slist>?
        for entry in resolve { pins = curl_slist_append(pins, entry) }
        defer { curl_slist_free_all(pins) }
        let source = Source(message)
        let context = Unmanaged.passRetained(source)
        defer { context.release() }

        try check(sluice_curl_setopt_string(curl, CURLOPT_URL, url))
        try check(sluice_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1))
        try check(sluice_curl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps"))
        try check(sluice_curl_setopt_string(curl, CURLOPT_PROXY, ""))
        if pins != nil { try check(sluice_curl_setopt_slist(curl, CURLOPT_RESOLVE, pins)) }
        try check(sluice_curl_setopt_long(curl, CURLOPT_TIMEOUT_MS, milliseconds(timeout)))
        let level: curl_usessl = switch tls {
        case .required: CURLUSESSL_ALL
        case .opportunistic: CURLUSESSL_TRY
        case .off: CURLUSESSL_NONE
        }
        try check(sluice_curl_setopt_long(curl, CURLOPT_USE_SSL, Int(level.rawValue)))
        if let caFile { try check(sluice_curl_setopt_string(curl, CURLOPT_CAINFO, caFile)) }
        try check(sluice_curl_setopt_string(curl, CURLOPT_MAIL_FROM, "<\(from)>"))
        try check(sluice_curl_setopt_slist(curl, CURLOPT_MAIL_RCPT, recipients))
        try check(sluice_curl_setopt_long(curl, CURLOPT_UPLOAD, 1))
        try check(sluice_curl_setopt_off(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(message.count)))
        try check(sluice_curl_setopt_callback(curl, CURLOPT_READFUNCTION, { buffer, size, count, context in
            let source = Unmanaged<Source>.fromOpaque(context!).takeUnretainedValue()
            let room = min(size * count, source.bytes.count - source.offset)
            guard room > 0, let buffer else { return 0 }
            source.bytes.withUnsafeBufferPointer { bytes in
                UnsafeMutableRawPointer(buffer).copyMemory(from: bytes.baseAddress! + source.offset, byteCount: room)
            }
            source.offset += room
            return room
        }))
        try check(sluice_curl_setopt_pointer(curl, CURLOPT_READDATA, context.toOpaque()))
        try check(curl_easy_perform(curl))
    }
}
