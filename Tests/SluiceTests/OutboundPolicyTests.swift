import Sluice
@testable import SluiceNotify
import Testing

@Suite("The outbound (SSRF) policy: address spellings, scopes, URLs, allow list, pins")
struct OutboundPolicyTests {
    typealias Scope = IPAddress.Scope

    /// Every spelling a URL parser or `inet_aton` reads as an address, and its scope.
    static let spellings: [(String, Scope)] = [
        // Loopback, however it is written.
        ("127.0.0.1", .loopback), ("127.1", .loopback), ("127.0.1", .loopback), ("2130706433", .loopback), ("0x7f.1", .loopback),
        ("0x7F.1", .loopback), ("0177.0.0.1", .loopback), ("0177.1", .loopback), ("0x7f000001", .loopback), ("017700000001", .loopback),
        ("0x7f.0.0x0.1", .loopback), ("0177.0x0.1", .loopback), ("127.0.0.1.", .loopback), ("127.255.255.254", .loopback),
        ("0x00007f.1", .loopback),
        ("::1", .loopback), ("0:0:0:0:0:0:0:1", .loopback), ("::ffff:127.0.0.1", .loopback), ("::ffff:7f00:1", .loopback),
        ("::ffff:0:7f00:1", .loopback), ("::127.0.0.1", .loopback), ("64:ff9b::7f00:1", .loopback), ("64:ff9b::127.0.0.1", .loopback),
        ("2002:7f00:1::", .loopback), ("2002:7f00:0001:0:0:0:0:1", .loopback),
        // Unspecified (Linux connects it to the local host).
        ("0.0.0.0", .unspecified), ("0", .unspecified), ("0x0", .unspecified), ("00.0", .unspecified), ("::", .unspecified),
        ("::ffff:0.0.0.0", .unspecified),
        // Private, shared, link-local.
        ("10.1.2.3", .privateUse), ("012.1.2.3", .privateUse), ("167838211", .privateUse), ("192.168.1.1", .privateUse),
        ("0xc0a80101", .privateUse), ("172.16.0.1", .privateUse), ("172.31.255.255", .privateUse), ("::ffff:a00:1", .privateUse),
        ("::ffff:192.168.0.1", .privateUse), ("2002:c0a8:101::1", .privateUse), ("64:ff9b::10.0.0.1", .privateUse),
        ("fc00::1", .privateUse), ("fd12:3456:789a::1", .privateUse),
        ("100.64.0.1", .sharedAddressSpace), ("100.127.255.255", .sharedAddressSpace),
        ("169.254.169.254", .linkLocal), ("2852039166", .linkLocal), ("0xa9fea9fe", .linkLocal), ("0251.0376.0251.0376", .linkLocal),
        ("169.254.43518", .linkLocal), ("::ffff:169.254.169.254", .linkLocal), ("fe80::1", .linkLocal), ("febf::1", .linkLocal),
        // Multicast and broadcast.
        ("224.0.0.1", .multicast), ("239.255.255.250", .multicast), ("ff02::1", .multicast), ("::ffff:224.0.0.1", .multicast),
        ("255.255.255.255", .broadcast), ("4294967295", .broadcast),
        // Reserved.
        ("240.0.0.1", .reserved), ("0.1.2.3", .reserved), ("192.0.2.1", .reserved), ("198.18.0.1", .reserved), ("203.0.113.9", .reserved),
        ("::8.8.8.8", .reserved), ("2001:db8::1", .reserved), ("2001::1", .reserved), ("2001:2::1", .reserved), ("fec0::1", .reserved),
        ("64:ff9b:1::1", .reserved), ("100::1", .reserved), ("4000::1", .reserved),
        // Public: these must pass.
        ("8.8.8.8", .global), ("134744072", .global), ("0x8.0x8.0x8.0x8", .global), ("93.184.216.34", .global), ("1.1.1.1", .global),
        ("172.32.0.1", .global), ("172.15.255.255", .global), ("100.128.0.1", .global), ("100.63.255.255", .global),
        ("192.169.0.1", .global), ("0127.0.0.1", .global), ("11.0.0.1", .global), ("223.255.255.255", .global),
        ("2606:4700:4700::1111", .global), ("2a00:1450:4001::200e", .global), ("::ffff:8.8.8.8", .global), ("64:ff9b::808:808", .global),
        ("2002:808:808::1", .global), ("2001:4860::8888", .global),
    ]

    @Test(arguments: spellings)
    func everySpellingIsClassified(_ host: String, _ scope: Scope) throws {
        guard case .address(let address) = IPAddress.parse(host: host) else {
            Issue.record("\(host) is not read as an address: \(IPAddress.parse(host: host))")
            return
        }
        #expect(address.scope == scope, "\(host) is \(address) (\(address.scope))")
        #expect(address.isGlobal == (scope == .global))
    }

    @Test func spellingsReadAsTheAddressTheyName() {
        for (host, canonical) in [("127.1", "127.0.0.1"), ("127.0.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
                                  ("0177.0.0.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("2852039166", "169.254.169.254"),
                                  ("1.2.65535", "1.2.255.255"), ("1.16777215", "1.255.255.255"), ("0x.0x.0x.0x1", "0.0.0.1"),
                                  ("::ffff:7f00:1", "::ffff:127.0.0.1"), ("0:0:0:0:0:0:0:1", "::1")] {
            guard case .address(let address) = IPAddress.parse(host: host) else {
                Issue.record("\(host) is not an address")
                continue
            }
            #expect(address.description == canonical, "\(host)")
        }
    }

    @Test func namesAndNonAddressesAreToldApart() {
        for name in ["example.com", "localhost", "1.2.3.4.example", "0x7f.example", "127.0.0.1x", "hooks-1.example.co.uk", "a", "0x7f.1.nip.io"] {
            #expect(IPAddress.parse(host: name) == .name, "\(name)")
        }
        // They end in a number, so they are IPv4 or nothing.
        for invalid in ["1.2.3.256", "1.2.3.4.5", "0x7g.1", "08.0.0.1", "256.1", "1.2.16777216", "4294967296", "1..2.3", ".1.2.3",
                        "example.123", "0x1ffffffff", "99999999999999999999999999", ":::", "fe80::1%eth0", "::ffff:127.0.0.256", "1::2::3"] {
            #expect(IPAddress.parse(host: invalid) == .invalid, "\(invalid)")
        }
    }

    @Test func callersURLsAreCheckedStrictly() throws {
        let policy = OutboundPolicy(allowedHosts: [])
        let refused: [(String, OutboundPolicy.Refusal)] = [
            ("http://127.0.0.1:8080/x", .privateAddress), ("http://127.1:8080/x", .privateAddress), ("http://2130706433/", .privateAddress),
            ("http://0x7f.1/", .privateAddress), ("http://0177.0.0.1/", .privateAddress), ("http://0x7f000001/", .privateAddress),
            ("http://[::ffff:127.0.0.1]/", .privateAddress), ("http://[::ffff:7f00:1]/", .privateAddress), ("http://[::1]:80/", .privateAddress),
            ("http://[::]/", .privateAddress), ("http://0.0.0.0/", .privateAddress), ("http://0/", .privateAddress),
            ("http://10.1.2.3/", .privateAddress), ("http://169.254.169.254/latest/meta-data", .privateAddress),
            ("http://2852039166/latest", .privateAddress), ("http://192.168.1.1/", .privateAddress), ("http://172.16.0.1/", .privateAddress),
            ("http://100.64.0.1/", .privateAddress), ("http://[fe80::1]/", .privateAddress), ("http://[fc00::1]/", .privateAddress),
            ("http://224.0.0.1/", .privateAddress), ("http://[64:ff9b::7f00:1]/", .privateAddress), ("http://[2002:7f00:1::]/", .privateAddress),
            ("http://127.0.0.1.:81/", .privateAddress), ("HTTP://LOCALHOST/", .privateAddress), ("http://api.localhost/", .privateAddress),
            ("ftp://example.com/", .scheme), ("gopher://example.com/", .scheme), ("smtp://example.com/", .scheme), ("file:///etc/passwd", .scheme),
            ("http://user:pw@example.com/", .credentials), ("http://@example.com/", .credentials), ("http://evil.com@127.0.0.1/", .credentials),
            ("/relative", .malformed), ("example.com", .malformed), ("javascript:alert(1)", .malformed), ("http:///x", .malformed),
            ("http://exa mple.com/", .malformed), ("http://example.com\\@127.0.0.1/", .malformed), ("http://ex%41mple.com/", .malformed),
            ("http://éxample.com/", .malformed), ("http://example..com/", .malformed), ("http://example.com./", .malformed),
            ("http://[127.0.0.1]/", .malformed), ("http://::1/", .malformed), ("http://[::1/", .malformed), ("http://[::1]x/", .malformed),
            ("http://[fe80::1%25eth0]/", .malformed), ("http://example.com:0/", .malformed), ("http://example.com:99999/", .malformed),
            ("http://example.com:/", .malformed), ("http://example.com:+80/", .malformed), ("http://example.com:80:80/", .malformed),
            ("http://1.2.3.256/", .malformed), ("http://example.123/", .malformed), ("http://[example.com]/", .malformed),
            ("http://" + String(repeating: "a", count: 2050) + ".com/", .malformed), ("http://" + String(repeating: "a", count: 64) + ".com/", .malformed),
            ("", .malformed), ("http://example.com/\n", .malformed),
        ]
        for (url, refusal) in refused {
            #expect(throws: refusal, "\(url.prefix(60))") { try policy.check(url) }
        }
        // Public URLs pass; an address literal is sent to in its canonical form.
        for (url, sent) in [("https://hooks.example.com/sluice?token=1", "https://hooks.example.com/sluice?token=1"),
                            ("HTTPS://Hooks.Example.COM:8443/A?B#c", "https://hooks.example.com:8443/A?B#c"),
                            ("http://93.184.216.34:8080/x", "http://93.184.216.34:8080/x"), ("http://134744072:8080/a?b", "http://8.8.8.8:8080/a?b"),
                            ("http://[2606:2800:220:1::1]/", "http://[2606:2800:220:1::1]/"), ("http://[::ffff:808:808]/", "http://[::ffff:8.8.8.8]/"),
                            ("http://my_host.example.com", "http://my_host.example.com")] {
            #expect((try? policy.check(url))?.requestURL == sent, "\(url)")
        }
        let target = try policy.check("https://hooks.example.com/x")
        #expect(target.port == 443 && target.host == "hooks.example.com" && target.address == nil && !target.isAllowed)
    }

    @Test func theAllowListMatchesTheHostAsWrittenAndItsPort() throws {
        let host = OutboundPolicy(allowedHosts: ["127.0.0.1"])
        #expect(try host.check("http://127.0.0.1:9000/cb").isAllowed)
        #expect(try host.check("http://127.0.0.1/cb").isAllowed)
        // Other spellings of the same address are not what the operator wrote.
        for other in ["http://127.1:9000/", "http://2130706433:9000/", "http://0x7f.1/", "http://localhost:9000/", "http://[::1]:9000/",
                      "http://[::ffff:127.0.0.1]:9000/", "http://127.0.0.2:9000/"] {
            #expect(throws: OutboundPolicy.Refusal.privateAddress, "\(other)") { try host.check(other) }
        }
        // With a port, only that port.
        let port = OutboundPolicy(allowedHosts: ["127.0.0.1:9000", " [::1]:9001 ", "hooks.internal", "not:a:port:entry", "x:abc"])
        #expect(try port.check("http://127.0.0.1:9000/cb").isAllowed)
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try port.check("http://127.0.0.1:9001/cb") }
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try port.check("http://127.0.0.1/cb") }
        #expect(try port.check("http://[::1]:9001/").isAllowed)
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try port.check("http://[::1]:9000/") }
        #expect(try port.check("https://HOOKS.internal/x").isAllowed)
        #expect(try !port.check("https://hooks.internal.example.com/x").isAllowed)
        #expect(port.allowedHosts == [.init(host: "127.0.0.1", port: 9000), .init(host: "::1", port: 9001), .init(host: "hooks.internal", port: nil),
                                      .init(host: "not:a:port:entry", port: nil)])
        // `*` allows any host, still only in a well-formed URL.
        let any = OutboundPolicy(allowedHosts: ["*"])
        #expect(try any.check("http://127.1/").isAllowed)
        #expect(throws: OutboundPolicy.Refusal.credentials) { try any.check("http://a:b@127.1/") }
        #expect(throws: OutboundPolicy.Refusal.scheme) { try any.check("file:///etc/passwd") }
    }

    @Test func aConfiguredURLIsTrustedForItsOwnChannelOnly() throws {
        let callbacks = OutboundPolicy(allowedHosts: [])
        let webhook = try callbacks.trusting("http://10.0.0.5:8080/hook")
        #expect(try webhook.check("http://10.0.0.5:8080/hook").isAllowed)
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try webhook.check("http://10.0.0.5:8081/hook") }
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try callbacks.check("http://10.0.0.5:8080/hook") }
        // SMTP has its schemes, and the operator's URL may carry credentials.
        let mail = try OutboundPolicy(allowedHosts: [], schemes: ["smtp", "smtps"]).trusting("smtp://user:secret@10.0.0.9:2525")
        let relay = try mail.check("smtp://user:secret@10.0.0.9:2525")
        #expect(relay.isAllowed && relay.port == 2525 && relay.requestURL == "smtp://user:secret@10.0.0.9:2525")
        #expect(try mail.check("smtps://10.0.0.9:2525").isAllowed)
        #expect(try mail.check("smtps://mail.example.com").port == 465)
        #expect(throws: OutboundPolicy.Refusal.scheme) { try mail.check("http://10.0.0.9:2525/") }
        #expect(throws: OutboundPolicy.Refusal.malformed) { try callbacks.trusting("not a url") }
    }

    @Test func everyResolvedAddressIsCheckedAndPinned() throws {
        let policy = OutboundPolicy(allowedHosts: [])
        let target = try policy.check("https://hooks.example.com/x")
        func addresses(_ hosts: String...) -> [IPAddress] {
            hosts.compactMap { host in
                guard case .address(let address) = IPAddress.parse(host: host) else { return nil }
                return address
            }
        }
        // One private answer among public ones refuses the name (a resolver may rotate them).
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try policy.check(resolved: addresses("8.8.8.8", "127.0.0.1"), of: target) }
        #expect(throws: OutboundPolicy.Refusal.privateAddress) { try policy.check(resolved: addresses("::ffff:169.254.169.254"), of: target) }
        #expect(throws: OutboundPolicy.Refusal.unresolvable) { try policy.check(resolved: [], of: target) }
        #expect(OutboundPolicy.Refusal.unresolvable.isTransient && !OutboundPolicy.Refusal.privateAddress.isTransient)
        let destination = try policy.check(resolved: addresses("1.1.1.1", "2606:4700::1111"), of: target)
        #expect(destination.pins == ["hooks.example.com:443:1.1.1.1,[2606:4700::1111]"])
        // An allowed name may resolve anywhere, and is pinned all the same.
        let allowed = OutboundPolicy(allowedHosts: ["hooks.example.com:443"])
        #expect(try allowed.check(resolved: addresses("10.0.0.7"), of: try allowed.check("https://hooks.example.com/x")).pins
            == ["hooks.example.com:443:10.0.0.7"])
        // A literal needs no lookup and no pin: the request URL holds the checked address.
        let literal = try policy.resolve(try policy.check("http://134744072/"))
        #expect(literal.pins.isEmpty && literal.addresses.map(\.description) == ["8.8.8.8"])
        // The real resolver: localhost is loopback wherever it is written as a name.
        let local = try OutboundPolicy(allowedHosts: ["localhost"]).check("http://localhost:8080/")
        #expect(throws: OutboundPolicy.Refusal.privateAddress) {
            try policy.resolve(OutboundPolicy.Target(url: local.url, scheme: "http", host: "localhost", port: 8080, address: nil, isAllowed: false,
                                                     requestURL: local.requestURL))
        }
        let pinned = try OutboundPolicy(allowedHosts: ["localhost"]).resolve(local)
        #expect(pinned.addresses.contains { $0.description == "127.0.0.1" })
        #expect(pinned.pins.first?.hasPrefix("localhost:8080:") == true)
    }
}
