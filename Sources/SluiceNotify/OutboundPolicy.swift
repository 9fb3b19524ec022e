import Foundation
import NIOPosix

/// The one policy every outbound request of Sluice goes through (notify's webhooks, Slack,
/// e-mail and job callbacks, the async calls' callbacks), so that nobody who names a URL can
/// make Sluice reach the internal network (SSRF):
///
/// - the URL is parsed strictly: its scheme one of ``schemes``, printable ASCII only, no
///   backslash, no user name or password (unless the operator configured the URL), a host
///   name of letters, digits, `-`, `_` and dots (IDN in its punycode form), or an address
///   literal; a host that reads as an IPv4 number is read as every URL parser and `inet_aton`
///   read it (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1` are all 127.0.0.1, see
///   ``IPAddress/parse(host:)``), and is sent to in its dotted form;
/// - the host is resolved, and every address must be ``IPAddress/Scope/global``: loopback,
///   private, shared, link-local, multicast, unspecified, broadcast and reserved addresses are
///   refused, in IPv4 and in every IPv6 form that carries IPv4 (mapped, translated,
///   compatible, NAT64, 6to4); `localhost` and `*.localhost` are refused before any lookup;
/// - the checked addresses are pinned for the request (libcurl's `CURLOPT_RESOLVE`; the
///   `Host` header, TLS name and certificate check stay those of the URL), so a name that
///   resolves elsewhere a second time (DNS rebinding) still reaches a checked address;
/// - redirects are never followed and no proxy from the environment is used: a 3xx answer is
///   the answer (a failed delivery).
///
/// The operator's allow list (`SLUICE_CALLBACK_ALLOW_HOSTS`) names hosts that may be sent to
/// whatever they resolve to: each entry is a host as written in URLs (`hooks.internal`,
/// `127.0.0.1`, `[fd00::5]`), optionally with a port (`127.0.0.1:9000`: that port only), or
/// `*` for any. An entry matches the URL's host *as written* (case-insensitive), never the
/// resolved address: allowing `127.0.0.1` does not allow `127.1`, `localhost` or `[::1]`. Hosts
/// the operator configured (SLUICE_WEBHOOK_URL, SLUICE_SLACK_WEBHOOK_URL, SLUICE_SMTP_URL) are
/// allowed for their own channel only (``trusting(_:)``); they are still parsed, resolved,
/// pinned and never redirected.
public struct OutboundPolicy: Sendable {
    /// One entry of the allow list: a host as written and, optionally, the one port allowed.
    public struct AllowedHost: Sendable, Hashable {
        /// Lowercase, IPv6 without brackets.
        public var host: String
        /// Nil for any port.
        public var port: Int?

        /// An entry for `host` (lowercase, IPv6 without brackets) on `port`, or any port.
        public init(host: String, port: Int?) {
            self.host = host
            self.port = port
        }

        /// Reads `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; nil for anything else.
        public init?(_ entry: String) {
            let text = entry.lowercased()
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]") else { return nil }
                host = String(text[text.index(after: text.startIndex)..<close])
                let rest = text[text.index(after: close)...]
                if rest.isEmpty {
                    port = nil
                } else {
                    guard rest.hasPrefix(":"), let number = OutboundPolicy.port(rest.dropFirst()) else { return nil }
                    port = number
                }
            } else if text.filter({ $0 == ":" }).count > 1 {
                host = text
                port = nil
            } else {
                let parts = text.split(separator: ":", omittingEmptySubsequences: false)
                host = String(parts[0])
                if parts.count == 2 {
                    guard let number = OutboundPolicy.port(parts[1]) else { return nil }
                    port = number
                } else {
                    port = nil
                }
            }
            guard !host.isEmpty else { return nil }
        }
    }

    /// The operator's allow list (entries that cannot be read match nothing).
    public var allowedHosts: [AllowedHost]
    /// `*` in the allow list: every host may be sent to.
    public var allowsAnyHost: Bool
    /// The URL schemes spoken (lowercase): `http` and `https`, or `smtp` and `smtps`.
    public var schemes: Set<String>
    /// Whether URLs may carry a user name and password (only URLs the operator configured).
    public var allowsCredentials: Bool

    /// A policy allowing `allowedHosts` (entries of `SLUICE_CALLBACK_ALLOW_HOSTS`) for URLs of `schemes`.
    public init(allowedHosts: [String], schemes: Set<String> = ["http", "https"]) {
        let entries = allowedHosts.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        self.allowsAnyHost = entries.contains("*")
        self.allowedHosts = entries.compactMap(AllowedHost.init)
        self.schemes = schemes
        self.allowsCredentials = false
    }

    /// This policy, with the exact host and port of `url` (one the operator configured, such
    /// as SLUICE_SMTP_URL) allowed whatever it resolves to, and its credentials accepted.
    /// Use the answer for that channel only: callers' URLs never get its allowance.
    /// - Throws: a ``Refusal`` when `url` is not a URL this policy can speak.
    public func trusting(_ url: String) throws(Refusal) -> OutboundPolicy {
        var trusted = self
        trusted.allowsCredentials = true
        var reader = trusted
        reader.allowsAnyHost = true
        let target = try reader.check(url)
        trusted.allowedHosts.append(AllowedHost(host: target.host, port: target.port))
        return trusted
    }

    /// Why a URL was refused (stable codes, for problem answers and delivery errors).
    public enum Refusal: String, Error, Sendable {
        case malformed = "callback_url_malformed"
        case scheme = "callback_url_scheme"
        case credentials = "callback_url_credentials"
        case privateAddress = "callback_url_private_address"
        case unresolvable = "callback_url_unresolvable"

        /// A sentence for people.
        public var detail: String {
            switch self {
            case .malformed: "the URL must be an absolute URL of at most 2048 printable ASCII bytes with a valid host and port"
            case .scheme: "the URL's scheme is not one Sluice sends to (http or https)"
            case .credentials: "the URL must not carry a user name or password"
            case .privateAddress: "the URL names a loopback, private, link-local or reserved address"
            case .unresolvable: "the URL's host does not resolve"
            }
        }

        /// Whether the same URL may pass later: only a name that did not resolve now.
        public var isTransient: Bool { self == .unresolvable }
    }

    /// A URL that passed ``check(_:)``.
    public struct Target: Sendable, Equatable {
        /// The URL as given.
        public var url: String
        /// The scheme, lowercase.
        public var scheme: String
        /// The host as written, lowercase; IPv6 without brackets.
        public var host: String
        /// The port, the scheme's default when none is written.
        public var port: Int
        /// The address, when the host is an address literal.
        public var address: IPAddress?
        /// Whether the allow list names the host (and port): its addresses are not checked.
        public var isAllowed: Bool
        /// The URL sent: the host lowercase, an address literal in its canonical form.
        public var requestURL: String
    }

    /// A target whose host was resolved and whose addresses were checked.
    public struct Destination: Sendable, Equatable {
        public var target: Target
        /// Every address the host had, all checked.
        public var addresses: [IPAddress]
        /// `CURLOPT_RESOLVE` entries (`host:port:address,…`) pinning the name to `addresses`;
        /// empty for an address literal (the request URL holds it).
        public var pins: [String]
    }

    static func defaultPort(_ scheme: String) -> Int {
        switch scheme {
        case "https": 443
        case "smtp": 25
        case "smtps": 465
        default: 80
        }
    }

    static func port(_ text: Substring) -> Int? {
        guard (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ (48...57).contains($0) }), let number = Int(text), (1...65535).contains(number) else { return nil }
        return number
    }

    /// Whether the allow list names `host` (as written, lowercase) on `port`.
    public func isAllowed(host: String, port: Int) -> Bool {
        allowsAnyHost || allowedHosts.contains { $0.host == host && ($0.port == nil || $0.port == port) }
    }

    /// Checks what can be checked without DNS: the form, and an address literal's scope.
    /// - Throws: a ``Refusal``.
    public func check(_ text: String) throws(Refusal) -> Target {
        let bytes = text.utf8
        guard !bytes.isEmpty, bytes.count <= 2048, bytes.allSatisfy({ (0x21...0x7e).contains($0) && $0 != UInt8(ascii: "\\") }),
              let separator = text.range(of: "://") else { throw .malformed }
        let scheme = text[..<separator.lowerBound].lowercased()
        guard let first = scheme.utf8.first, (97...122).contains(first),
              scheme.utf8.allSatisfy({ (97...122).contains($0) || (48...57).contains($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") })
        else { throw .malformed }
        guard schemes.contains(scheme) else { throw .scheme }
        let rest = text[separator.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let tail = rest[authorityEnd...]
        var userInfo: Substring?
        if let at = authority.lastIndex(of: "@") {
            guard allowsCredentials else { throw .credentials }
            userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
        }

        let hostText: Substring, portText: Substring?, bracketed: Bool
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .malformed }
            hostText = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.isEmpty {
                portText = nil
            } else {
                guard after.hasPrefix(":") else { throw .malformed }
                portText = after.dropFirst()
            }
            bracketed = true
        } else {
            let parts = authority.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw .malformed }
            hostText = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
            bracketed = false
        }
        var port = Self.defaultPort(scheme)
        if let portText {
            guard let number = Self.port(portText) else { throw .malformed }
            port = number
        }
        let host = hostText.lowercased()
        guard !host.isEmpty, host.utf8.count <= 253 else { throw .malformed }

        var address: IPAddress?
        switch IPAddress.parse(host: host) {
        case .invalid:
            throw .malformed
        case .address(let literal):
            // Brackets hold IPv6 and only IPv6.
            guard bracketed == (literal.bytes.count == 16) else { throw .malformed }
            address = literal
        case .name:
            guard !bracketed else { throw .malformed }
            let labels = host.split(separator: ".", omittingEmptySubsequences: false)
            guard labels.allSatisfy({ label in
                (1...63).contains(label.utf8.count) && label.utf8.allSatisfy {
                    (97...122).contains($0) || (48...57).contains($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
                }
            }) else { throw .malformed }
        }
        let allowed = isAllowed(host: host, port: port)
        if !allowed {
            if host == "localhost" || host.hasSuffix(".localhost") { throw .privateAddress }
            if let address, !address.isGlobal { throw .privateAddress }
        }
        let shownHost = address.map { $0.bytes.count == 16 ? "[\($0)]" : "\($0)" } ?? host
        let shownUser = userInfo.map { "\($0)@" } ?? ""
        let shownPort = portText == nil ? "" : ":\(port)"
        return Target(url: text, scheme: scheme, host: host, port: port, address: address, isAllowed: allowed,
                      requestURL: "\(scheme)://\(shownUser)\(shownHost)\(shownPort)\(tail)")
    }

    /// Resolves a checked target's host and checks every address (unless the host is
    /// allowed); answers the pins for the request. Blocks on the resolver: call it off the
    /// cooperative pool (``destination(_:)`` does).
    /// - Throws: ``Refusal/privateAddress`` when any address is not global,
    ///   ``Refusal/unresolvable`` when the name has none.
    public func resolve(_ target: Target) throws(Refusal) -> Destination {
        if let address = target.address { return Destination(target: target, addresses: [address], pins: []) }
        return try check(resolved: IPAddress.resolve(target.host), of: target)
    }

    func check(resolved addresses: [IPAddress], of target: Target) throws(Refusal) -> Destination {
        guard !addresses.isEmpty else { throw .unresolvable }
        if !target.isAllowed, addresses.contains(where: { !$0.isGlobal }) { throw .privateAddress }
        let list = addresses.map { $0.bytes.count == 16 ? "[\($0)]" : "\($0)" }.joined(separator: ",")
        return Destination(target: target, addresses: addresses, pins: ["\(target.host):\(target.port):\(list)"])
    }

    /// ``check(_:)`` and ``resolve(_:)`` of a URL about to be sent to, the lookup off the
    /// cooperative pool.
    /// - Throws: a ``Refusal``.
    public func destination(_ url: String) async throws -> Destination {
        let target = try check(url)
        if target.address != nil { return try resolve(target) }
        return try await NIOThreadPool.singleton.runIfActive { try resolve(target) }
    }

    /// The check of a URL a caller gives (an upload's `callback_url`, an async call's
    /// `X-Callback-Url`): ``check(_:)``, then, for a name, a lookup whose addresses must all be
    /// global. A name that does not resolve now is accepted: it is resolved and checked again
    /// when it is sent to.
    /// - Throws: a ``Refusal``.
    public func accept(_ url: String) async throws -> Target {
        let target = try check(url)
        guard target.address == nil, !target.isAllowed else { return target }
        do {
            _ = try await NIOThreadPool.singleton.runIfActive { try resolve(target) }
        } catch let refusal as Refusal where refusal.isTransient {
            // Checked again when sent.
        }
        return target
    }
}
