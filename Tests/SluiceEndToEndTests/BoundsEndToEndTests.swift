import Foundation
import Sluice
import SluiceRedis
import Testing

/// Bounded work per input through the real pipeline (every stage its own process): records
/// near the per-record limit are cut into chunks of at most `max_chunk_bytes` and no stage's
/// memory follows the upload's size; an event id of 400 KB is quarantined and leaves no mark.
@Suite("Bounds end to end", .serialized)
struct BoundsEndToEndTests {
    /// The repository's manifests: ingest cuts at 500 events or 4 MiB, records up to 1 MiB.
    static let maxChunkBytes = 4 << 20

    static func with(db: Int, except skipped: Set<String> = [], _ body: (PipelineFixture) async throws -> Void) async throws {
        // The deployed visibility timeout (30 s, not the fixture's 3 s): on a busy test machine a
        // chunk of 4 MB can take seconds, and reclaims are not what these tests are about.
        let relaxed = [("visibility_timeout: 3s", "visibility_timeout: 30s")]
        let manifests = try PipelineFixture.pipelineManifests(overrides: [
            "validate": relaxed, "enrich": relaxed, "transform": relaxed, "load": relaxed,
        ])
        let fixture = try await PipelineFixture(db: db, manifests: manifests)
        let result: Result<Void, any Error>
        do {
            try await fixture.startPipeline(except: skipped)
            result = .success(try await body(fixture))
        } catch {
            result = .failure(error)
        }
        await fixture.stopAll()
        // The directory holds a 300 MB upload: removed unless the test threw or SLUICE_KEEP_TEST_DIRS=1.
        if case .success = result, ProcessInfo.processInfo.environment["SLUICE_KEEP_TEST_DIRS"] != "1" {
            try? FileManager.default.removeItem(atPath: fixture.directory)
        }
        try result.get()
    }

    /// One event of the built-in shape whose JSON is exactly `size` bytes (padded in `payload.properties.blob`).
    static func event(id: String, size: Int, now: String) -> [UInt8] {
        let head = #"{"metadata":{"event_id":"\#(id)","timestamp":"\#(now)","version":"1","source":"bounds"},"user":{"id":"u-bounds"},"payload":{"event_type":"click","properties":{"blob":""#
        let pad = padding(id: id, size: size, now: now)
        let words = Array("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ".utf8)
        var bytes = Array(head.utf8)
        bytes.reserveCapacity(size + 1)
        for i in 0..<pad { bytes.append(words[i % words.count]) }
        bytes += Array(#""}}}"#.utf8)
        return bytes
    }

    /// The length of `payload.properties.blob` in ``event(id:size:now:)``.
    static func padding(id: String, size: Int, now: String) -> Int {
        let head = #"{"metadata":{"event_id":"\#(id)","timestamp":"\#(now)","version":"1","source":"bounds"},"user":{"id":"u-bounds"},"payload":{"event_type":"click","properties":{"blob":""#
        return size - head.utf8.count - #""}}}"#.utf8.count
    }

    /// 300 records of 1,000,000 bytes (the per-record limit is 1,048,576): at 500 events per
    /// chunk they would make one chunk of 300 MB, which ingest would hold to append it and
    /// validate to parse it. Cut at 4 MiB, each chunk holds 4 of them; the upload completes
    /// with exact counts, and the peak resident memory of every stage stays under 200 MB.
    @Test func recordsNearTheLimitAreCutIntoChunksOfAtMostMaxChunkBytes() async throws {
        // Validate starts once the test has read the chunks ingest wrote to its stream.
        try await Self.with(db: 42, except: ["validate"]) { fixture in
            let count = 300, size = 1_000_000
            let now = ISO8601DateFormatter().string(from: Date())
            let path = "\(fixture.directory)/large-records.ndjson"
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let file = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            for i in 0..<count {
                var line = Self.event(id: "bounds-large-\(i)", size: size, now: now)
                #expect(line.count == size)
                line.append(UInt8(ascii: "\n"))
                try file.write(contentsOf: line)
            }
            try file.close()

            let answer = try await fixture.upload(file: path, contentType: "application/x-ndjson")
            #expect(answer.status == 202, "\(answer.body.serializedString)")
            #expect(answer.body["received"]?.intValue == Int64(count))
            let jobID = try #require(answer.body["job_id"]?.stringValue)

            // Every chunk in validate's stream holds at most max_chunk_bytes of events: 4 of
            // these records (4,000,005 bytes), never 5. Read a few entries at a time.
            let stream = fixture.keys.stream("validate")
            var entries = 0, events = 0, largest = 0, cursor = "-"
            while true {
                let page = try await fixture.clients.redis.range(stream: stream, start: cursor, count: 4)
                for entry in page {
                    let body = try #require(entry.fields.first { $0.0 == "events" }?.1, "entry \(entry.id) has no events")
                    largest = max(largest, body.count)
                    #expect(body.count <= Self.maxChunkBytes, "entry \(entry.id) holds \(body.count) bytes of events")
                    #expect(entry.field("n") == "4", "entry \(entry.id) holds \(entry.field("n") ?? "?") events")
                    #expect(entry.field("job") == jobID)
                    events += Int(entry.field("n") ?? "") ?? 0
                    entries += 1
                }
                guard page.count == 4, let last = page.last else { break }
                cursor = "(" + last.id
            }
            #expect(entries == 75)
            #expect(events == count)
            #expect(largest == 4 * size + 5)

            try await fixture.start("validate")
            let job = try await fixture.waitForJob(jobID, timeout: .seconds(400))
            #expect(job["status"]?.stringValue == "completed", "\(job.serializedString)")
            #expect(job.count("received") == count)
            #expect(job.count("loaded") == count)
            #expect(job.count("quarantined") == 0)
            #expect(job.count("duplicate") == 0)
            #expect(try await fixture.warehouseRows(job: jobID) == count)
            // Every byte of every record arrived.
            let stored = try await fixture.clients.postgres.query(
                "SELECT count(*)::text, sum(length(properties->>'blob'))::text FROM events WHERE job_id = \(jobID)::uuid")
            let padding = (0..<count).reduce(0) { $0 + Self.padding(id: "bounds-large-\($1)", size: size, now: now) }
            #expect(stored.rows.first == ["\(count)", "\(padding)"])

            // No stage held the upload: ingest and validate (which held the whole chunk before)
            // peaked under 200 MB; the later stages under 300 MB, less than the bytes alone of the
            // one 300 MB chunk they would have read (a debug build's enrich and load peak near 215 MB).
            for (name, limit) in [("ingest", 200), ("validate", 200), ("enrich", 300), ("transform", 300), ("load", 300)] {
                let process = try #require(fixture.processes[name])
                let peak = peakResidentKB(process.pid)
                #expect(peak > 0 && peak < limit * 1024, "\(name) peaked at \(peak) kB")
            }
        }
    }

    /// One event among ten whose `event_id` is 400 KB: the job completes, that event is
    /// quarantined as `invalid_event_id`, the ten load, and Redis holds a first-seen mark per
    /// loaded event, each named by a digest of fixed length, none by an id.
    @Test func aFourHundredKilobyteEventIDIsQuarantinedAndLeavesNoMark() async throws {
        try await Self.with(db: 43) { fixture in
            let now = ISO8601DateFormatter().string(from: Date())
            let huge = "huge-" + String(repeating: "k", count: 400_000)
            var body = Data()
            for i in 0..<11 {
                let id = i == 5 ? huge : "bounds-id-\(i)"
                body.append(contentsOf: Self.event(id: id, size: id.utf8.count + 400, now: now) + [UInt8(ascii: "\n")])
            }
            let answer = try await fixture.upload(bytes: body, contentType: "application/x-ndjson")
            #expect(answer.status == 202, "\(answer.body.serializedString)")
            #expect(answer.body["received"]?.intValue == 11)
            let jobID = try #require(answer.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(jobID)
            #expect(job["status"]?.stringValue == "completed", "\(job.serializedString)")
            #expect(job.count("loaded") == 10)
            #expect(job.count("quarantined") == 1)
            #expect(try await fixture.quarantineReasons(job: jobID) == ["invalid_event_id": 1])
            #expect(try await fixture.warehouseRows(job: jobID) == 10)
            let ids = try await fixture.clients.postgres.query("SELECT event_id FROM events WHERE job_id = \(jobID)::uuid ORDER BY event_id")
            #expect(ids.rows.map { $0[0] ?? "" } == ([0, 1, 2, 3, 4, 6, 7, 8, 9, 10].map { "bounds-id-\($0)" }).sorted())

            // The marks: one per loaded event, each `{sluice}:dedup:` and 43 characters.
            var marks: [String] = [], cursor = "0"
            repeat {
                let reply = try await fixture.clients.redis.send(["SCAN", RedisArgument(cursor), "MATCH", "{sluice}:dedup:*", "COUNT", "1000"])
                let parts = try #require(reply.array)
                cursor = try #require(parts[0].text)
                marks += parts[1].array?.compactMap(\.text) ?? []
            } while cursor != "0"
            let prefix = "{sluice}:dedup:"
            #expect(marks.count == 10)
            #expect(marks.allSatisfy { $0.utf8.count == prefix.utf8.count + StreamKeys.dedupDigestLength }, "\(marks)")
            // A mark is the digest of the dataset's name and the key.
            #expect(Set(marks) == Set([0, 1, 2, 3, 4, 6, 7, 8, 9, 10].map { prefix + StreamKeys.dedupDigest("events\u{1F}bounds-id-\($0)") }))
            #expect(!marks.contains { $0.contains("kkkk") || $0.contains("bounds-id") })
            // No key of Redis is anywhere near the raw id's length.
            var longest = 0
            cursor = "0"
            repeat {
                let reply = try await fixture.clients.redis.send(["SCAN", RedisArgument(cursor), "COUNT", "1000"])
                let parts = try #require(reply.array)
                cursor = try #require(parts[0].text)
                for key in parts[1].array?.compactMap(\.text) ?? [] { longest = max(longest, key.utf8.count) }
            } while cursor != "0"
            #expect(longest > 0 && longest < 200, "the longest key is \(longest) bytes")
        }
    }
}
