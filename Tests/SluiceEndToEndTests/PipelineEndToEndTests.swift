import Foundation
import Sluice
import SluicePrivacy
import SluiceRedis
import Testing

/// The pipeline of `functions/`, every stage its own process, on gen_events.py workloads.
@Suite(.serialized) struct PipelineEndToEndTests {
    static let reasons: Set<String> = ["missing_field", "wrong_type", "invalid_timestamp", "invalid_value", "future_timestamp"]

    /// Checks a finished job against the workload's manifest, the warehouse and the quarantine.
    func expectExact(_ job: JSONValue, _ workload: GeneratedWorkload, _ fixture: PipelineFixture, id: String) async throws {
        #expect(job["status"]?.stringValue == "completed")
        #expect(job.count("received") == workload.count)
        for name in ["loaded", "quarantined", "stale", "duplicate", "no_consent"] {
            #expect(job.count(name) == workload.expected[name], "counts.\(name)")
        }
        #expect(job.count("failed") == 0)
        #expect(job.count("in_flight") == 0)
        #expect(try await fixture.warehouseRows(job: id) == workload.expected["loaded"])
        let reasons = try await fixture.quarantineReasons(job: id)
        #expect(reasons.values.reduce(0, +) == workload.expected["quarantined"])
        #expect(Set(reasons.keys).isSubset(of: Self.reasons), "reasons: \(reasons)")
    }

    @Test func everyFormatIsAccountedForExactly() async throws {
        try await PipelineFixture.with(db: 7, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            try await fixture.startPipeline()
            let runs: [(count: Int, seed: Int, format: String, type: String)] = [
                (100_000, 101, "ndjson", "application/x-ndjson"), (20_000, 102, "csv", "text/csv"),
                (20_000, 103, "xml", "application/xml"), (20_000, 104, "json", "application/json"),
            ]
            for run in runs {
                let workload = try await GeneratedWorkload.make(count: run.count, seed: run.seed, format: run.format, in: fixture.directory)
                let answer = try await fixture.upload(file: workload.path, contentType: run.type)
                #expect(answer.status == 202, "\(run.format): \(answer.body.serializedString)")
                #expect(answer.body["status"]?.stringValue == "received")
                #expect(answer.body["received"]?.intValue == Int64(workload.count))
                let id = try #require(answer.body["job_id"]?.stringValue)
                let job = try await fixture.waitForJob(id)
                try await expectExact(job, workload, fixture, id: id)
                if run.format == "csv" {
                    // Schema detection: the inferred column types are on the job.
                    let schema = try #require(job["schema"])
                    #expect(schema[0]?["name"]?.stringValue == "event_id")
                    #expect(schema[0]?["type"]?.stringValue == "string")
                    #expect(schema[7]?["name"]?.stringValue == "os_version")
                    #expect(schema[7]?["type"]?.stringValue == "number")
                }
                if run.format == "json" {
                    // The same upload again loads nothing: every event that was loaded or a
                    // duplicate is now a duplicate; malformed and stale ones are what they were.
                    let again = try await fixture.upload(file: workload.path, contentType: run.type)
                    #expect(again.status == 202)
                    let second = try #require(again.body["job_id"]?.stringValue)
                    let repeated = try await fixture.waitForJob(second)
                    #expect(repeated["status"]?.stringValue == "completed")
                    #expect(repeated.count("loaded") == 0)
                    #expect(repeated.count("duplicate") == workload.expected["loaded"]! + workload.expected["duplicate"]!)
                    #expect(repeated.count("quarantined") == workload.expected["quarantined"])
                    #expect(repeated.count("stale") == workload.expected["stale"])
                    #expect(try await fixture.warehouseRows(job: second) == 0)
                }
            }
            // The job list has them all, newest first, and the recorder wrote the final rows.
            let list = try await HTTP.request("GET", fixture.url("ingest", "/api/v1/jobs?limit=5"))
            #expect(list.status == 200)
            let jobs = try JSONParser().parse(Array(list.body))["jobs"]
            #expect(jobs?.arrayValue?.count == 5)
            #expect(jobs?[0]?["format"]?.stringValue == "json")
            try await fixture.waitUntilDrained()
            let final = try await fixture.clients.postgres.query(
                "SELECT count(*) FROM jobs WHERE status = 'completed' AND (counts->>'received')::int > 0")
            #expect(final.scalar == "5")
        }
    }

    /// The needles (8 bytes or longer) that occur in `haystack`, byte for byte, in one pass
    /// keyed by their first 8 bytes (String.contains per needle is far too slow on megabytes).
    static func occurring(_ needles: [String], in haystack: String) -> [String] {
        func prefix(_ bytes: some Collection<UInt8>) -> UInt64 { bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }
        var byPrefix: [UInt64: [[UInt8]]] = [:]
        for needle in needles where needle.utf8.count >= 8 { byPrefix[prefix(needle.utf8), default: []].append(Array(needle.utf8)) }
        let bytes = Array(haystack.utf8)
        var found = Set<[UInt8]>()
        var window: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            window = window << 8 | UInt64(byte)
            guard index >= 7, let candidates = byPrefix[window] else { continue }
            let start = index - 7
            for needle in candidates where start + needle.count <= bytes.count && bytes[start..<(start + needle.count)].elementsEqual(needle) {
                found.insert(needle)
            }
        }
        return needles.filter { found.contains(Array($0.utf8)) }
    }

    /// validate's and quarantine's pii-mask: none of the personal data gen_events.py planted is in
    /// a pg_dump of the whole database or in any function's log (at debug level), while the same
    /// search finds every sample in the upload; user ids are stored as pseudonyms only.
    @Test func personalDataReachesNeitherTheDatabaseNorTheLogs() async throws {
        try await PipelineFixture.with(db: 7, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            fixture.extraEnvironment["SLUICE_LOG_LEVEL"] = "debug"
            try await fixture.startPipeline()
            let workload = try await GeneratedWorkload.make(count: 6_000, seed: 105, format: "ndjson", in: fixture.directory)
            #expect(workload.piiSamples.count == 2_000)
            let upload = try String(contentsOfFile: workload.path, encoding: .utf8)
            // Positive control: the search finds the samples in the upload (all but the three
            // whose events gen_events.py broke by deleting their payload).
            let present = Self.occurring(workload.piiSamples, in: upload)
            #expect(present.count == 1_997, "positive control: \(present.count) samples in the upload")
            let answer = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(answer.status == 202)
            let id = try #require(answer.body["job_id"]?.stringValue)
            try await expectExact(try await fixture.waitForJob(id), workload, fixture, id: id)
            // Records that do not parse are quarantined by ingest with their raw text: masked too.
            let broken = Data(("{\"note\": \"reach me at leak.test@example.org or +44 20 7946 0958\", \n" +
                               "card 4111 1111 1111 1111 from 198.51.100.23\n").utf8)
            let refused = try await fixture.upload(bytes: broken, contentType: "application/x-ndjson")
            let brokenJob = try await fixture.waitForJob(try #require(refused.body["job_id"]?.stringValue))
            #expect(brokenJob.count("quarantined") == 2)
            try await fixture.waitUntilDrained()

            let dump = try await runCommand("/usr/bin/pg_dump", [fixture.databaseURL], timeout: .seconds(120))
            #expect(dump.status == 0, "\(dump.error)")
            let text = dump.output
            #expect(text.contains("COPY public.events") && text.contains("COPY public.quarantine"))
            #expect(text.contains("**** **** **** 1111") && text.contains("<EMAIL:"), "the dump holds the masked forms")
            let leaked = Self.occurring(workload.piiSamples + ["leak.test@example.org", "+44 20 7946 0958", "4111 1111 1111 1111", "198.51.100.23"],
                                        in: text)
            #expect(leaked.isEmpty, "in the database: \(leaked.prefix(5))")
            // User ids only as pseudonyms.
            let plain = try await fixture.clients.postgres.query(
                "SELECT count(*) FROM events WHERE job_id = \(id)::uuid AND user_id !~ '^u_[a-p]{32}$'")
            #expect(plain.scalar == "0")
            #expect(text.range(of: #"(?<![\w-])u-[0-9]+(?![\w-])"#, options: .regularExpression) == nil, "a plain user id in the dump")

            let logs = fixture.processes.values.map(\.log).joined(separator: "\n")
            #expect(logs.contains("chunk acknowledged"), "positive control: the debug logs were captured")
            let logged = Self.occurring(workload.piiSamples + ["leak.test@example.org", "4111 1111 1111 1111"], in: logs)
            #expect(logged.isEmpty, "in the logs: \(logged.prefix(5))")
        }
    }

    @Test(arguments: ["validate", "enrich", "transform", "load"])
    func killingAStageLosesNothing(stage: String) async throws {
        let db = ["validate": 8, "enrich": 9, "transform": 10, "load": 13][stage]!
        try await PipelineFixture.with(db: db, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            try await fixture.startPipeline()
            let seed = 200 + db
            let workload = try await GeneratedWorkload.make(count: 100_000, seed: seed, format: "ndjson", in: fixture.directory)
            let upload = Task { try await fixture.upload(file: workload.path, contentType: "application/x-ndjson") }
            // Kill the stage once it is in the middle of the run, then start it again.
            let deadline = ContinuousClock.now + .seconds(120)
            var killedAt = 0
            while ContinuousClock.now < deadline {
                let processed = try await fixture.clients.redis.send(["KEYS", "{sluice}:job:*"]).array?.first?.text
                if let key = processed, let seen = try await fixture.clients.redis.send(["HGET", RedisArgument(key), RedisArgument("fn.\(stage).in")]).int,
                   seen >= 20_000 {
                    killedAt = Int(seen)
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(killedAt >= 20_000, "the stage never got going")
            let victim = try #require(fixture.processes[stage])
            victim.signal(SIGKILL)
            #expect(await victim.waitExit(timeout: .seconds(10)) == 128 + SIGKILL)
            try await fixture.start(stage)
            let answer = try await upload.value
            #expect(answer.status == 202)
            let id = try #require(answer.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            try await expectExact(job, workload, fixture, id: id)
            #expect(killedAt < workload.count, "killed after the stage had seen everything")
        }
    }

    @Test func anUploadThatFailsTakesNoneOfAnotherUploadsEventsWithIt() async throws {
        // Upload 1 sends 1,000 events, promises more and stalls: its two chunks are loaded while
        // it is still being received. Upload 2 sends the same 1,000 events whole. Then upload 1's
        // client goes away: upload 1 fails and its rows are deleted. Upload 2 must load the
        // events, not count them duplicates of rows that are gone.
        try await PipelineFixture.with(db: 17, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            try await fixture.startPipeline()
            let body = ndjsonClicks(idPrefix: "overlap", count: 1_000)
            let rows = { try await fixture.clients.postgres.query("SELECT count(*) FROM events WHERE event_id LIKE 'overlap-%'").scalar }
            let first = try RawConnection(port: fixture.ports["ingest"]!, timeout: .seconds(60))
            first.send(RawHTTP.request("POST", "/api/v1/ingest", headers: [
                ("Content-Type", "application/x-ndjson"), ("Content-Length", String(body.count + 1_000_000)),
            ]) + Array(body))
            let deadline = ContinuousClock.now + .seconds(60)
            while try await rows() != "1000", ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
            #expect(try await rows() == "1000", "the stalled upload's chunks were not loaded")

            let second = try await fixture.upload(bytes: body, contentType: "application/x-ndjson")
            #expect(second.status == 202)
            let secondJob = try #require(second.body["job_id"]?.stringValue)
            // While upload 1 is being received, upload 2's events are neither new nor duplicates.
            try await Task.sleep(for: .seconds(2))
            let held = try await fixture.job(secondJob)
            #expect(held["status"]?.stringValue == "processing", "\(held.serializedString)")
            #expect(held.count("duplicate") == 0 && held.count("loaded") == 0, "\(held.serializedString)")

            first.disconnect()
            let done = try await fixture.waitForJob(secondJob)
            #expect(done["status"]?.stringValue == "completed")
            #expect(done.count("loaded") == 1_000, "\(done.serializedString)")
            #expect(done.count("duplicate") == 0, "\(done.serializedString)")
            #expect(try await fixture.warehouseRows(job: secondJob) == 1_000)
            #expect(try await rows() == "1000")
            let firstJobs = try await fixture.clients.postgres.query("SELECT status, error FROM jobs WHERE id <> \(secondJob)::uuid").rows
            #expect(firstJobs == [["failed", "body_incomplete"]])

            // Now that upload 2 has completed, the same events again are duplicates, at once.
            let third = try await fixture.upload(bytes: body, contentType: "application/x-ndjson")
            let thirdJob = try await fixture.waitForJob(try #require(third.body["job_id"]?.stringValue))
            #expect(thirdJob.count("duplicate") == 1_000, "\(thirdJob.serializedString)")
            #expect(try await rows() == "1000")
        }
    }

    @Test func refusedBodiesFailTheJobAndLoadNothing() async throws {
        let manifests = try PipelineFixture.pipelineManifests(overrides: [
            "ingest": [("max_body_bytes: 1073741824", "max_body_bytes: 4000000")],
        ])
        try await PipelineFixture.with(db: 14, manifests: manifests) { fixture in
            try await fixture.startPipeline()
            // A valid prefix long enough to be published before the body turns out broken.
            let workload = try await GeneratedWorkload.make(count: 3000, seed: 301, format: "json", in: fixture.directory)
            var truncated = try Data(contentsOf: URL(fileURLWithPath: workload.path))
            truncated.removeLast(200)
            var utf8 = try Data(contentsOf: URL(fileURLWithPath: workload.path))
            utf8 = utf8.prefix(700_000) + Data([0xC3, 0x28]) + utf8.suffix(from: 700_000)
            let cases: [(name: String, body: Data, type: String, status: Int, code: String, offset: Int?)] = [
                ("truncated JSON array", truncated, "application/json", 400, "truncated_body", truncated.count),
                ("invalid UTF-8", utf8, "application/json", 400, "invalid_utf8", 700_000),
                ("mismatched XML", Data("<events><event><a>1</b></event></events>".utf8), "application/xml", 400, "invalid_xml", nil),
                ("XML entity", Data("<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x \"y\">]><events><event><a>&x;</a></event></events>".utf8),
                 "application/xml", 400, "xml_dtd_refused", 21),
                ("binary", Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D]), "application/x-ndjson", 400, "binary_body", 0),
                ("not an array", Data("{\"a\": 1}".utf8), "application/json", 400, "json_not_an_array", 0),
            ]
            var failed: [String] = []
            for item in cases {
                let answer = try await fixture.upload(bytes: item.body, contentType: item.type)
                #expect(answer.status == item.status, "\(item.name): \(answer.body.serializedString)")
                #expect(answer.body["code"]?.stringValue == item.code, "\(item.name)")
                #expect(answer.body["offset"]?.intValue != nil, "\(item.name) names no offset")
                if let offset = item.offset { #expect(answer.body["offset"]?.intValue == Int64(offset), "\(item.name)") }
                let id = try #require(answer.body["job_id"]?.stringValue, "\(item.name)")
                failed.append(id)
                let job = try await fixture.job(id)
                #expect(job["status"]?.stringValue == "failed", "\(item.name)")
                #expect(job["error"]?.stringValue == item.code, "\(item.name)")
            }
            // Too large: refused from Content-Length before any job exists.
            let large = try await fixture.upload(bytes: Data(repeating: UInt8(ascii: "\n"), count: 4_000_001), contentType: "application/x-ndjson")
            #expect(large.status == 413)
            #expect(large.body["code"]?.stringValue == "body_too_large")
            // Unknown format.
            let unknown = try await fixture.upload(bytes: Data("x".utf8), contentType: "image/png")
            #expect(unknown.status == 415)
            #expect(unknown.body["code"]?.stringValue == "unsupported_format")
            // The process is still up, and nothing of a refused body reached the warehouse.
            let live = try await HTTP.request("GET", fixture.url("ingest", "/health/live"))
            #expect(live.status == 200)
            #expect(fixture.processes["ingest"]?.isRunning == true)
            try await fixture.waitUntilDrained()
            for id in failed {
                #expect(try await fixture.warehouseRows(job: id) == 0)
                #expect(try await fixture.job(id)["status"]?.stringValue == "failed")
            }
            // The refused events can be uploaded again once fixed: their first-seen marks are void.
            let fixed = try await fixture.upload(file: workload.path, contentType: "application/json")
            #expect(fixed.status == 202)
            let job = try await fixture.waitForJob(try #require(fixed.body["job_id"]?.stringValue))
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("loaded") == workload.expected["loaded"])
            #expect(job.count("duplicate") == workload.expected["duplicate"])
        }
    }

    @Test func anUploadCutOffByAKilledIngestFailsAndLoadsNothing() async throws {
        let manifests = try PipelineFixture.pipelineManifests(overrides: [
            "ingest": [("upload_lease: 60s", "upload_lease: 2s"), ("reap_interval: 15s", "reap_interval: 500ms")],
        ])
        try await PipelineFixture.with(db: 12, manifests: manifests) { fixture in
            try await fixture.startPipeline()
            let workload = try await GeneratedWorkload.make(count: 20_000, seed: 601, format: "ndjson", in: fixture.directory)
            let lines = try String(contentsOfFile: workload.path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            // curl streams its stdin as a chunked body: half the file goes, then ingest dies.
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            let target = fixture.url("ingest", "/api/v1/ingest")
            curl.arguments = ["-sS", "-X", "POST", "-T", "-", "-H", "Content-Type: application/x-ndjson",
                              "-H", "\(TestCaller.header): \(TestCaller.assertion(method: "POST", url: target))", target]
            let stdin = Pipe()
            curl.standardInput = stdin
            curl.standardOutput = FileHandle.nullDevice
            curl.standardError = FileHandle.nullDevice
            try curl.run()
            // A refused upload closes the pipe early: the write then fails here instead of killing the runner.
            signal(SIGPIPE, SIG_IGN)
            try stdin.fileHandleForWriting.write(contentsOf: Data((lines[..<10_000].joined(separator: "\n") + "\n").utf8))
            var jobID: String?
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let rows = try await fixture.clients.postgres.query("SELECT id::text FROM jobs WHERE status = 'received'")
                if let id = rows.scalar, try await fixture.clients.redis.send(["HGET", RedisArgument(fixture.keys.job(id)), "fn.validate.in"]).int ?? 0 >= 5_000 {
                    jobID = id
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            let id = try #require(jobID, "the first half never reached validate")
            let ingest = try #require(fixture.processes["ingest"])
            ingest.signal(SIGKILL)
            #expect(await ingest.waitExit(timeout: .seconds(10)) == 128 + SIGKILL)
            try? stdin.fileHandleForWriting.close()
            curl.waitUntilExit()
            #expect(curl.terminationStatus != 0, "curl got an answer from a killed process")
            // A new ingest process finds the job without its lease and fails it.
            try await fixture.start("ingest")
            let job = try await fixture.waitForJob(id, timeout: .seconds(60))
            #expect(job["status"]?.stringValue == "failed")
            #expect(job["error"]?.stringValue == "upload_interrupted")
            try await fixture.waitUntilDrained()
            #expect(try await fixture.warehouseRows(job: id) == 0)
            // The whole file, sent again, loads exactly as the manifest says.
            let again = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(again.status == 202)
            let second = try await fixture.waitForJob(try #require(again.body["job_id"]?.stringValue))
            try await expectExact(second, workload, fixture, id: try #require(again.body["job_id"]?.stringValue))
            #expect(try await fixture.warehouseRows(job: id) == 0)
        }
    }

    @Test func deadLetteredChunksRedriveIntoTheirJob() async throws {
        try await PipelineFixture.with(db: 11, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            // The warehouse refuses `search` events (a constraint an operator got wrong): every
            // load chunk holding one fails permanently and goes to the dead letters.
            try await fixture.clients.postgres.query("ALTER TABLE events ADD CONSTRAINT no_search CHECK (event_type <> 'search')")
            try await fixture.startPipeline()
            let workload = try await GeneratedWorkload.make(count: 3000, seed: 701, format: "ndjson", in: fixture.directory)
            let answer = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            let id = try #require(answer.body["job_id"]?.stringValue)
            let failed = try await fixture.waitForJob(id)
            #expect(failed["status"]?.stringValue == "failed")
            #expect(failed["error"]?.stringValue == "dead_lettered")
            let deadLettered = failed.count("failed")
            #expect(deadLettered > 0)
            // Every event that reached load was loaded or dead-lettered; the rest are as the manifest says.
            #expect(failed.count("loaded") + deadLettered == workload.expected["loaded"])
            for name in ["quarantined", "stale", "duplicate"] { #expect(failed.count(name) == workload.expected[name], "counts.\(name)") }
            try await fixture.waitUntilDrained()
            #expect(try await fixture.clients.postgres.query("SELECT status FROM jobs WHERE id = \(id)::uuid").scalar == "failed")

            // Fixed, and redriven: the same job goes on and completes exactly.
            try await fixture.clients.postgres.query("ALTER TABLE events DROP CONSTRAINT no_search")
            let redrive = try await runCommand(fixture.environment.binary, ["dlq", "redrive", "load"], environment: fixture.processEnvironment)
            #expect(redrive.status == 0, "\(redrive.error)")
            #expect(redrive.output.hasPrefix("redrove "))
            let job = try await fixture.waitForJob(id)
            try await expectExact(job, workload, fixture, id: id)
            #expect(job["error"] == nil || job["error"] == .null)
            try await fixture.waitUntilDrained()
            let row = try await fixture.clients.postgres.query("SELECT status, error FROM jobs WHERE id = \(id)::uuid")
            #expect(row.rows == [["completed", nil]])
            // Nothing is left to redrive.
            let again = try await runCommand(fixture.environment.binary, ["dlq", "redrive", "load"], environment: fixture.processEnvironment)
            #expect(again.output == "redrove 0 chunks to load\n")
        }
    }

    @Test func unparseableRecordsAreQuarantinedWithTheirLine() async throws {
        try await PipelineFixture.with(db: 15, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            try await fixture.startPipeline()
            let now = ISO8601DateFormatter().string(from: Date())
            func event(_ id: String) -> String {
                #"{"metadata":{"event_id":"\#(id)","timestamp":"\#(now)","version":"1","source":"web"},"user":{"id":"u-1"},"context":{"device_type":"mobile","location":{"country":"DE","region":"BE"}},"payload":{"event_type":"Page_View","properties":{"page":"/"}}}"#
            }
            let ndjson = [event("line-1"), "{\"broken\": ", event("line-3"), "", "[1,2]", event("line-6")].joined(separator: "\n") + "\n"
            let answer = try await fixture.upload(bytes: Data(ndjson.utf8), contentType: "application/x-ndjson")
            #expect(answer.status == 202)
            #expect(answer.body["received"]?.intValue == 5)
            let id = try #require(answer.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("loaded") == 3)
            #expect(job.count("quarantined") == 2)
            let rows = try await fixture.clients.postgres.query(
                "SELECT line, reason, function, raw FROM quarantine WHERE job_id = \(id)::uuid ORDER BY line")
            #expect(rows.rows.map { $0[0] } == ["2", "5"])
            #expect(rows.rows.map { $0[1] } == ["invalid_json", "not_an_object"])
            #expect(rows.rows.map { $0[2] } == ["ingest", "ingest"])
            #expect(rows.rows.map { $0[3] } == ["{\"broken\": ", "[1,2]"])
            // Transform's rules made the rows: flattened, lowercased, enriched.
            let row = try await fixture.clients.postgres.query(
                "SELECT event_type, user_id, country, country_name, device_class, properties->>'page' FROM events WHERE event_id = 'line-6'")
            // validate's pii-mask stores the user id as its keyed pseudonym.
            let user = PIIMasker(operators: [:], key: Array(PipelineFixture.pseudonymKey.utf8)).pseudonymousUserID("u-1")
            #expect(row.rows.first == ["page_view", user, "DE", "Germany", "handheld", "/"])

            // CSV: a row with the wrong number of cells is quarantined with its line.
            let csv = "event_id,timestamp,user_id,event_type\nc-1,\(now),u-2,click\nc-2,\(now)\nc-3,\(now),u-3,click\n"
            let csvAnswer = try await fixture.upload(bytes: Data(csv.utf8), contentType: "text/csv")
            let csvJob = try await fixture.waitForJob(try #require(csvAnswer.body["job_id"]?.stringValue))
            #expect(csvJob.count("loaded") == 2)
            #expect(csvJob.count("quarantined") == 1)
            let csvRows = try await fixture.clients.postgres.query(
                "SELECT line, reason FROM quarantine WHERE job_id = \(try #require(csvAnswer.body["job_id"]?.stringValue))::uuid")
            #expect(csvRows.rows == [["3", "csv_wrong_cell_count"]])
        }
    }

    @Test func cancellingAJobDropsItsRemainingChunks() async throws {
        try await PipelineFixture.with(db: 0, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            // Transform is not running: the job's events wait in its stream.
            try await fixture.startPipeline(except: ["transform"])
            let workload = try await GeneratedWorkload.make(count: 2000, seed: 401, format: "ndjson", in: fixture.directory)
            let answer = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            let id = try #require(answer.body["job_id"]?.stringValue)
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, try await fixture.backlog("validate") + fixture.backlog("enrich") > 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
            let waiting = try await fixture.backlog("transform")
            #expect(waiting > 0)
            #expect(try await fixture.job(id)["status"]?.stringValue == "processing")
            let cancel = try await HTTP.request("DELETE", fixture.url("ingest", "/api/v1/jobs/\(id)"))
            #expect(cancel.status == 200)
            #expect(try JSONParser().parse(Array(cancel.body))["status"]?.stringValue == "cancelled")
            try await fixture.start("transform")
            try await fixture.waitUntilDrained()
            let job = try await fixture.job(id)
            #expect(job["status"]?.stringValue == "cancelled")
            // What validate let through reached transform and was dropped there as cancelled.
            let passed = workload.expected["loaded"]!
            #expect(job.count("cancelled") == passed)
            #expect(job.count("loaded") == 0)
            #expect(job.count("quarantined") == workload.expected["quarantined"])
            #expect(try await fixture.warehouseRows(job: id) == 0)
            let again = try await HTTP.request("DELETE", fixture.url("ingest", "/api/v1/jobs/\(id)"))
            #expect(again.status == 409)
            let conflict = try JSONParser().parse(Array(again.body))
            #expect(conflict["code"]?.stringValue == "job_finished")
            #expect(conflict["status"] == .int(409))
            #expect(conflict["job_status"]?.stringValue == "cancelled")
            let missing = try await HTTP.request("DELETE", fixture.url("ingest", "/api/v1/jobs/00000000-0000-4000-8000-000000000000"))
            #expect(missing.status == 404)
            #expect(try JSONParser().parse(Array(missing.body))["code"]?.stringValue == "job_not_found")
            // The recorder wrote the final state into the row.
            let row = try await fixture.clients.postgres.query("SELECT status FROM jobs WHERE id = \(id)::uuid")
            #expect(row.scalar == "cancelled")

            // The dry run answers every event's fate and stores nothing.
            let before = try await fixture.clients.postgres.query("SELECT count(*) FROM events").scalar
            let keysBefore = try await fixture.clients.redis.send(["DBSIZE"]).int
            let now = ISO8601DateFormatter().string(from: Date())
            let body = """
                [{"metadata":{"event_id":"dry-1","timestamp":"\(now)"},"user":{"id":"u"},"context":{"location":{"country":"FR"}},"payload":{"event_type":"Click"}},
                 {"metadata":{"timestamp":"\(now)"},"user":{"id":"u"},"payload":{"event_type":"click"}},
                 {"metadata":{"event_id":"dry-3","timestamp":"2020-01-01T00:00:00Z"},"user":{"id":"u"},"payload":{"event_type":"click"}}]
                """
            let dry = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/process/transform"), body: Data(body.utf8),
                                             headers: ["Content-Type": "application/json"])
            #expect(dry.status == 200)
            let result = try JSONParser().parse(Array(dry.body))
            #expect(result["counts"] == ["forward": 1, "drop": 1, "quarantine": 1])
            #expect(result["results"]?[0]?["row"]?["event_id"]?.stringValue == "dry-1")
            #expect(result["results"]?[0]?["row"]?["event_type"]?.stringValue == "click")
            #expect(result["results"]?[0]?["row"]?["country_name"]?.stringValue == "France")
            #expect(result["results"]?[1]?["reason"]?.stringValue == "missing_field")
            #expect(result["results"]?[1]?["stage"]?.stringValue == "validate")
            #expect(result["results"]?[2]?["reason"]?.stringValue == "stale")
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM events").scalar == before)
            #expect(try await fixture.clients.redis.send(["DBSIZE"]).int == keysBefore)
        }
    }

    @Test func aHundredMegabyteUploadKeepsIngestSmall() async throws {
        try await PipelineFixture.with(db: 0, manifests: try PipelineFixture.pipelineManifests()) { fixture in
            let ingest = try await fixture.start("ingest")
            let workload = try await GeneratedWorkload.make(count: 225_000, seed: 501, format: "ndjson", in: fixture.directory)
            let size = try FileManager.default.attributesOfItem(atPath: workload.path)[.size] as? Int ?? 0
            #expect(size >= 100_000_000, "the workload is only \(size) bytes")
            let answer = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(answer.status == 202)
            #expect(answer.body["received"]?.intValue == Int64(workload.count))
            let peak = peakResidentKB(ingest.pid)
            #expect(peak > 0 && peak < 150 * 1024, "ingest peaked at \(peak) kB of resident memory")
            try await fixture.clients.redis.send(["FLUSHDB"])
        }
    }
}
