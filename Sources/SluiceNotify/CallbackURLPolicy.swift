import Foundation
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Where callers may have Sluice send their callbacks (a job's `callback_url`, an async call's
/// `X-Callback-Url`): absolute http(s) URLs without credentials, to public addresses only.
/// Loopback, private, link-local, shared, multicast and reserved addresses are refused, so a
/// caller cannot make Sluice reach the internal network (SSRF), unless the operator lists the
/// host in `SLUICE_CALLBACK_ALLOW_HOSTS`.
///
/// A URL is checked when it is given, and its host is resolved and checked again when it is
/// delivered to; the checked address is pinned for the request (`CURLOPT_RESOLVE`), so a name
/// that resolves elsewhere a second time (DNS rebinding) reaches the checked address.
public struct CallbackURLPolicy: Sendable {
    /// Hosts (names or addresses, lowercase) allowed even when private; `*` allows any.
    public var allowedHosts: Set<String>

    public init(allowedHosts: [String]) {
        self.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
    }

    /// Why a URL was refused (stable codes for problem answers and delivery errors).
    public enum Refusal: String, Error, Sendable {
        case malformed = "callback_url_malformed"
        case scheme = "callback_url_scheme"
        case credentials = "callback_url_credentials"
        case privateAddress = "callback_url_private_address"
        case unresolvable = "callback_url_unresolvable"

        public var detail: String {
            switch self {
            case .malformed: "the callback URL must be an absolute URL of at most 2048 bytes"
            case .scheme: "the callback URL must be http or https"
            case .credentials: "the callback URL must not carry a user name or password"
            case .privateAddress: "the callback URL names a loopback, private or reserved address"
            case .unresolvable: "the callback URL's host does not resolve"
            }
        }
    }

    /// The parts of a checked URL.
    public struct Target: Sendable, Equatable {
        public var url: String
        public var host: String
        public var port: Int
    }

    /// Checks what can be checked without DNS: the form, and a literal address's range.
    public func check(_ text: String) throws(Refusal) -> Target {
        guard text.utf8.count <= 2048, let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              var host = components.host?.lowercased(), !host.isEmpty else { throw .malformed }
        guard scheme == "http" || scheme == "https" else { throw .scheme }
        guard components.user == nil, components.password == nil else { throw .credentials }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        if !isAllowed(host) {
            if host == "localhost" || host.hasSuffix(".localhost") { throw .privateAddress }
            if let bytes = Self.literalAddress(host), !Self.isPublic(bytes) { throw .privateAddress }
        }
        return Target(url: text, host: host, port: port)
    }

    /// Resolves the host and checks every address; answers the `CURLOPT_RESOLVE` pin
    /// (`host:port:address`) of the first, or none for an allowed host.
    public func pin(_ target: Target) throws(Refusal) -> [String] {
        if isAllowed(target.host) { return [] }
        let addresses = Self.resolve(target.host)
        guard let first = addresses.first else { throw .unresolvable }
        for address in addresses where !Self.isPublic(address) { throw .privateAddress }
        let shown = first.count == 16 ? "[\(Self.format(first))]" : Self.format(first)
        return ["\(target.host):\(target.port):\(shown)"]
    }

    /// ``check(_:)`` and ``pin(_:)`` of a URL about to be sent to, off the cooperative pool
    /// (name resolution blocks).
    /// - Throws: a ``Refusal``.
    public func pinned(_ url: String) async throws -> [String] {
        try await NIOThreadPool.singleton.runIfActive { try pin(try check(url)) }
    }

    func isAllowed(_ host: String) -> Bool {
        allowedHosts.contains("*") || allowedHosts.contains(host)
    }

    /// The bytes of a literal IPv4 or IPv6 address.
    static func literalAddress(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        return nil
    }

    static func format(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Every address `host` resolves to (4 or 16 bytes each).
    static func resolve(_ host: String) -> [[UInt8]] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var addresses: [[UInt8]] = []
        var cursor = result
        while let info = cursor?.pointee {
            if info.ai_family == AF_INET, let address = info.ai_addr {
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { addresses.append(withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) }) }
            } else if info.ai_family == AF_INET6, let address = info.ai_addr {
                address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { addresses.append(withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }) }
            }
            cursor = info.ai_next
        }
        return addresses
    }

    /// Whether an address is globally routable unicast (RFC 6890's special ranges refused).
    static func isPublic(_ bytes: [UInt8]) -> Bool {
        if bytes.count == 4 { return isPublicV4(bytes) }
        guard bytes.count == 16 else { return false }
        // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): the IPv4 address decides.
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff { return isPublicV4(Array(bytes[12...])) }
        if bytes[0..<12].elementsEqual([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]) { return isPublicV4(Array(bytes[12...])) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) { return false }     // :: and ::1
        if bytes[0] & 0xfe == 0xfc { return false }                    // fc00::/7 unique local
        if bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80 { return false } // fe80::/10 link-local
        if bytes[0] == 0xff { return false }                           // multicast
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x0d && bytes[3] == 0xb8 { return false } // documentation
        return true
    }

    static func isPublicV4(_ b: [UInt8]) -> Bool {
        switch (b[0], b[1]) {
        case (0, _), (10, _), (127, _): return false
        case (100, 64...127): return false          // shared address space
        case (169, 254): return false               // link-local (cloud metadata)
        case (172, 16...31): return false
        case (192, 168): return false
        case (198, 18...19): return false           // benchmarking
        case (192, 0) where b[2] == 0 || b[2] == 2: return false
        case (198, 51) where b[2] == 100: return false
        case (203, 0) where b[2] == 113: return false
        default: return b[0] < 224                  // multicast and reserved
        }
    }
}
