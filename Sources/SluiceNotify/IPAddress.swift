#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 address (4 or 16 bytes) and the kind of destination it is, for the outbound
/// policy: only ``Scope/global`` addresses may be sent to unless the operator allows the host.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address in network order: 4 bytes (IPv4) or 16 (IPv6).
    public let bytes: [UInt8]

    /// An address of 4 or 16 bytes; nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// What a URL's host is: a name for the resolver, an address literal, or neither.
    public enum Host: Sendable, Equatable {
        /// A DNS name (not checked here beyond its characters).
        case name
        /// An IPv4 literal in any spelling, or an IPv6 literal.
        case address(IPAddress)
        /// Looks like an IPv4 number but is none (`1.2.3.256`, `0x7g.1`, five parts).
        case invalid
    }

    /// Classifies a URL host (lowercase, IPv6 without its brackets) the way URL parsers
    /// (WHATWG, libcurl) and `inet_aton` read it: a host whose last dot-separated part is a
    /// number is an IPv4 address of one to four parts, each decimal, octal (a leading `0`) or
    /// hexadecimal (`0x`), the last part filling the remaining bytes: `127.1`, `2130706433`,
    /// `0x7f.1`, `0177.0.0.1` and `0x7f000001` are all 127.0.0.1. A host with a `:` is IPv6.
    public static func parse(host: String) -> Host {
        if host.contains(":") {
            var v6 = in6_addr()
            guard inet_pton(AF_INET6, host, &v6) == 1 else { return .invalid }
            return .address(IPAddress(unchecked: withUnsafeBytes(of: v6) { Array($0) }))
        }
        var parts = host.split(separator: ".", omittingEmptySubsequences: false)
        // One trailing dot is dropped before deciding, as WHATWG does.
        if parts.count > 1, parts.last?.isEmpty == true { parts.removeLast() }
        guard let last = parts.last, isNumber(last) else { return .name }
        guard parts.count <= 4 else { return .invalid }
        var numbers: [UInt64] = []
        for part in parts {
            guard let number = number(part) else { return .invalid }
            numbers.append(number)
        }
        var value: UInt64 = 0
        for (index, number) in numbers.enumerated() {
            if index < numbers.count - 1 {
                guard number <= 255 else { return .invalid }
                value |= number << (8 * UInt64(3 - index))
            } else {
                guard number < (1 << (8 * UInt64(5 - numbers.count))) else { return .invalid }
                value |= number
            }
        }
        return .address(IPAddress(unchecked: [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]))
    }

    private init(unchecked bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// WHATWG's "ends in a number": all decimal digits, or `0x` and hexadecimal digits.
    private static func isNumber(_ part: Substring) -> Bool {
        if part.isEmpty { return false }
        if part.utf8.allSatisfy({ (48...57).contains($0) }) { return true }
        let lower = part.lowercased()
        return lower.hasPrefix("0x") && lower.utf8.dropFirst(2).allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// One part of an IPv4 number; nil when it is empty or has a digit its base lacks.
    private static func number(_ part: Substring) -> UInt64? {
        let lower = part.lowercased()
        guard !lower.isEmpty, lower.utf8.count <= 40 else { return nil }
        if lower.hasPrefix("0x") {
            let digits = lower.dropFirst(2)
            return digits.isEmpty ? 0 : UInt64(digits, radix: 16)
        }
        if lower.count > 1 && lower.hasPrefix("0") { return UInt64(lower.dropFirst(), radix: 8) }
        return UInt64(lower, radix: 10)
    }

    /// What kind of destination an address is (RFC 6890 and the IANA special-purpose
    /// registries). Only `global` is sent to unless the operator allows the host.
    public enum Scope: String, Sendable {
        /// Globally routable unicast.
        case global
        /// 127.0.0.0/8, ::1.
        case loopback
        /// RFC 1918 (10/8, 172.16/12, 192.168/16) and IPv6 unique local fc00::/7.
        case privateUse = "private"
        /// 100.64.0.0/10, carrier-grade NAT.
        case sharedAddressSpace = "shared"
        /// 169.254.0.0/16 (cloud metadata lives there), fe80::/10.
        case linkLocal = "link_local"
        /// 224.0.0.0/4, ff00::/8.
        case multicast
        /// 0.0.0.0, :: (Linux connects them to the local host).
        case unspecified
        /// 255.255.255.255.
        case broadcast
        /// Everything else that is not globally routable: 0/8, 240/4, documentation,
        /// benchmarking, IETF protocol assignments, IPv4-compatible, Teredo, IPv6 outside 2000::/3.
        case reserved
    }

    /// Whether the address may be sent to without the operator allowing it.
    public var isGlobal: Bool { scope == .global }

    /// The kind of destination. IPv6 forms that carry an IPv4 address (IPv4-mapped
    /// `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
    /// NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are as the IPv4 address is.
    public var scope: Scope {
        bytes.count == 4 ? Self.scope(v4: bytes[0], bytes[1], bytes[2], bytes[3]) : scopeV6
    }

    static func scope(v4 a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> Scope {
        switch (a, b, c) {
        case (0, 0, 0) where d == 0: return .unspecified
        case (0, _, _): return .reserved                             // "this network"
        case (10, _, _), (172, 16...31, _), (192, 168, _): return .privateUse
        case (100, 64...127, _): return .sharedAddressSpace
        case (127, _, _): return .loopback
        case (169, 254, _): return .linkLocal
        case (192, 0, 0), (192, 0, 2), (192, 88, 99), (198, 18...19, _), (198, 51, 100), (203, 0, 113): return .reserved
        case (224...239, _, _): return .multicast
        case (255, 255, 255) where d == 255: return .broadcast
        case (240...255, _, _): return .reserved
        default: return .global
        }
    }

    private var scopeV6: Scope {
        let b = bytes
        let embedded = { (at: Int) in Self.scope(v4: b[at], b[at + 1], b[at + 2], b[at + 3]) }
        if b[0..<15].allSatisfy({ $0 == 0 }) { return b[15] == 0 ? .unspecified : b[15] == 1 ? .loopback : .reserved }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return embedded(12) }         // ::ffff:0:0/96 mapped
        if b[0..<8].allSatisfy({ $0 == 0 }) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0 { return embedded(12) } // ::ffff:0:0:0/96 translated
        if b[0..<12].allSatisfy({ $0 == 0 }) {                                                                // ::/96 IPv4-compatible (deprecated)
            let inner = embedded(12)
            return inner == .global ? .reserved : inner
        }
        if b[0..<12].elementsEqual([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]) { return embedded(12) }      // 64:ff9b::/96 NAT64
        if b[0..<6].elementsEqual([0, 0x64, 0xff, 0x9b, 0, 1]) { return .reserved }                             // 64:ff9b:1::/48 local NAT64
        if b[0] == 0x20 && b[1] == 0x02 { return embedded(2) }                                                 // 2002::/16 6to4
        if b[0] == 0x20 && b[1] == 0x01 && b[2] <= 0x01 { return .reserved }                                  // 2001::/23 (Teredo, ORCHID, benchmarking)
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8 { return .reserved }                  // 2001:db8::/32 documentation
        if b[0] & 0xfe == 0xfc { return .privateUse }                                                          // fc00::/7 unique local
        if b[0] == 0xfe && b[1] & 0xc0 == 0x80 { return .linkLocal }                                           // fe80::/10
        if b[0] == 0xff { return .multicast }
        if b[0] & 0xe0 != 0x20 { return .reserved }                                                            // outside 2000::/3 global unicast
        return .global
    }

    /// The address as `inet_ntop` writes it (IPv6 without brackets).
    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Every address `host` resolves to, in the resolver's order, without duplicates; empty
    /// when it does not resolve. Blocks: call it off the cooperative pool.
    static func resolve(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0 else { return [] }
        defer { freeaddrinfo(result) }
        var addresses: [IPAddress] = []
        var cursor = result
        while let info = cursor?.pointee {
            var address: IPAddress?
            if info.ai_family == AF_INET, let raw = info.ai_addr {
                address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { IPAddress(unchecked: withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) }) }
            } else if info.ai_family == AF_INET6, let raw = info.ai_addr {
                address = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { IPAddress(unchecked: withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }) }
            }
            if let address, !addresses.contains(address) { addresses.append(address) }
            cursor = info.ai_next
        }
        return addresses
    }
}
