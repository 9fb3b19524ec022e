import Testing
@testable import Sluice

/// Chunks cut by bytes, first-seen marks named by a digest, and the manifest keys that set
/// those bounds (`max_chunk_bytes`, `dead_letters`).
@Suite("Bounds")
struct BoundsTests {
    func field(_ fields: [(String, [UInt8])], _ name: String) -> [UInt8]? {
        fields.first { $0.0 == name }?.1
    }

    @Test func eventsThatFitStayOneEntryWithTheSameBytes() throws {
        let events = (0..<20).map { Event(["id": .string("e\($0)")]) }
        let entries = ChunkCodec.encode(events: events, maxBytes: 4096, jobID: "j", traceID: "t", receivedAt: 7)
        let single = ChunkCodec.encode(events: events, jobID: "j", traceID: "t", receivedAt: 7)
        #expect(entries.count == 1)
        #expect(entries[0].map(\.0) == single.map(\.0))
        #expect(field(entries[0], "events") == field(single, "events"))
    }

    @Test func eventsAreCutIntoEntriesWithinTheLimit() throws {
        // 10 events of ~1,010 bytes each; 3,000 bytes hold two of them, not three.
        let events = (0..<10).map { Event(["id": .string("e\($0)"), "pad": .string(String(repeating: "a", count: 1000))]) }
        let sizes = events.map { $0.value.serializedBytes.count }
        let entries = ChunkCodec.encode(events: events, maxBytes: 3000, jobID: "j", traceID: nil)
        #expect(entries.count == 5)
        var decoded: [Event] = []
        for (index, entry) in entries.enumerated() {
            let body = try #require(field(entry, "events"))
            #expect(body.count <= 3000)
            #expect(body.count == sizes[2 * index] + sizes[2 * index + 1] + 3)
            let chunk = try ChunkCodec.decode(id: "\(index)-0", fields: entry)
            #expect(chunk.jobID == "j")
            decoded += chunk.events
        }
        #expect(decoded == events)
    }

    @Test func anEventLargerThanTheLimitGoesAlone() throws {
        let big = Event(["id": "big", "pad": .string(String(repeating: "b", count: 5000))])
        let events = [Event(["id": "a"]), big, Event(["id": "c"]), Event(["id": "d"])]
        let entries = ChunkCodec.encode(events: events, maxBytes: 1024, jobID: nil, traceID: nil)
        let counts = try entries.enumerated().map { try ChunkCodec.decode(id: "\($0.offset)-0", fields: $0.element).events.map(\.id) }
        #expect(counts == [["a"], ["big"], ["c", "d"]])
    }

    @Test func dedupKeysAreAFixedSizeDigest() {
        // SHA-256("abc") = ba7816bf…20015ad, as unpadded base64url.
        #expect(StreamKeys.dedupDigest("abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
        #expect(StreamKeys().dedup("abc") == "{sluice}:dedup:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
        // SHA-256("") = e3b0c442…b855.
        #expect(StreamKeys.dedupDigest("") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")
        let huge = String(repeating: "x", count: 400_000)
        for id in ["a", "é", huge, "evt-00000000-0000-0000-0000-000000000000"] {
            let key = StreamKeys(hashTag: "t").dedup(id)
            #expect(key.utf8.count == "{t}:dedup:".utf8.count + StreamKeys.dedupDigestLength)
            #expect(key.hasPrefix("{t}:dedup:"))
        }
        #expect(StreamKeys().dedup("a") != StreamKeys().dedup("b"))
        #expect(StreamKeys().dedup(huge).contains("xxxx") == false)
    }

    func parse(_ text: String) throws -> Manifest {
        try ManifestLoader.parse(text, name: "f", file: "functions/f/function.yaml")
    }

    @Test func manifestBoundsHaveDocumentedDefaults() throws {
        let manifest = try parse("handler: h\ntriggers: [{stream: f}]\n")
        #expect(manifest.maxChunkBytes == 4 << 20)
        #expect(manifest.deadLetters == DeadLetterPolicy(maxAge: .seconds(7 * 86400), maxLength: 10_000))
    }

    @Test func manifestBoundsAreRead() throws {
        let manifest = try parse("""
            handler: h
            triggers: [{stream: f}]
            max_chunk_bytes: 65536
            dead_letters: {max_age: 2d, max_length: 50}
            """)
        #expect(manifest.maxChunkBytes == 65536)
        #expect(manifest.deadLetters == DeadLetterPolicy(maxAge: .seconds(2 * 86400), maxLength: 50))
        let age = try parse("handler: h\ntriggers: [{stream: f}]\ndead_letters: {max_age: 90m}\n")
        #expect(age.deadLetters == DeadLetterPolicy(maxAge: .seconds(5400), maxLength: 10_000))
    }

    @Test func badManifestBoundsNameTheKey() {
        let cases: [(String, String)] = [
            ("max_chunk_bytes: 100", "max_chunk_bytes"),
            ("max_chunk_bytes: lots", "max_chunk_bytes"),
            ("dead_letters: 5", "dead_letters"),
            ("dead_letters: {max_age: forever}", "dead_letters.max_age"),
            ("dead_letters: {max_age: 0s}", "dead_letters.max_age"),
            ("dead_letters: {max_length: 0}", "dead_letters.max_length"),
            ("dead_letters: {max_size: 5}", "dead_letters.max_size"),
        ]
        for (line, key) in cases {
            do {
                _ = try parse("handler: h\ntriggers: [{stream: f}]\n\(line)\n")
                Issue.record("\(line) was accepted")
            } catch let error as ManifestError {
                #expect(error.key == key, "\(line): \(error)")
            } catch {
                Issue.record("\(line): \(error)")
            }
        }
    }
}
