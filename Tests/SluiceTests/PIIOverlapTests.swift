@testable import Sluice
@testable import SluicePrivacy
import Testing

/// Where the kinds' candidates overlap, the first kind in the scanner's order wins (e-mail,
/// IBAN, IPv6, then the numbers): the merge that keeps this linear answers what checking every
/// candidate against every match found answers.
@Suite("PII overlaps")
struct PIIOverlapTests {
    let scanner = PIIScanner()

    /// The quadratic rule, as a reference: each candidate against everything found before.
    func reference(_ text: String) -> [PIIMatch] {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer in
            let s = UnsafeBufferPointer(buffer)
            var found: [PIIMatch] = []
            for candidates in [PIIScanner.emails(s), PIIScanner.ibans(s), PIIScanner.ipv6s(s), scanner.numbers(s)] {
                for candidate in candidates where !found.contains(where: { $0.range.overlaps(candidate.range) }) {
                    found.append(candidate)
                }
            }
            return found.sorted { $0.range.lowerBound < $1.range.lowerBound }
        }
    }

    @Test func theFirstKindWins() {
        let text = "iban DE89 3704 0044 0532 0130 00, mapped ::ffff:192.168.0.1, mail a.b.com.@c.org 4111111111111111@x.io"
        let found = scanner.matches(in: text)
        let bytes = Array(text.utf8)
        let pieces = found.map { "\($0.entity.rawValue):\(String(decoding: bytes[$0.range], as: UTF8.self))" }
        #expect(pieces == ["iban:DE89 3704 0044 0532 0130 00", "ipv6:::ffff:192.168.0.1", "email:a.b.com.@c.org",
                           "email:4111111111111111@x.io"])
        #expect(found == reference(text))
    }

    @Test func mergeAnswersWhatTheReferenceAnswers() {
        let fragments = ["a@b.io", "x.y@mail.example.org", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "::1",
                         "2001:db8::8a2e:370:7334", "::ffff:10.0.0.1", "192.168.1.20", "4111 1111 1111 1111", "4111-1111-1111-1111",
                         "+44 20 7946 0958", "(555) 123-4567", "123-45-6789", "2024-01-15", "3.14", "@", ".", "-", " ", ":", "7", "q",
                         "user@", "@host.com", "1.2.3.4.5", "GB82 WEST 1234 5698 7654 32"]
        var generator = SplitMix64(state: 19)
        for _ in 0..<2_000 {
            var text = ""
            for _ in 0..<Int(generator.next() % 12) {
                text += fragments[Int(generator.next() % UInt64(fragments.count))]
                if generator.next() % 3 == 0 { text += " " }
            }
            #expect(scanner.matches(in: text) == reference(text), "\(text)")
        }
    }
}
