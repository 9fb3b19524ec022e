import Foundation
import Sluice
import Testing

/// `kill -9` of every process in turn while uploads flow: each pipeline function, then
/// redis-server (with `appendfsync always`, the zero-loss setting of docs/deploying.md) and PostgreSQL
/// (every process of it, as a crashed container), each restarted. Every event of every upload
/// is accounted for exactly and none is loaded twice.
///
/// `SLUICE_CHAOS_ROUNDS` (default 1) sends the kills round the victims again while there is
/// work: until every upload is answered and every job has ended, at most that many rounds (a
/// round takes about 22 s).
///
/// `SLUICE_CHAOS_EVENTS` sets the size: 12,000 in `make test`, 100,000 in `make chaos`.
/// `SLUICE_CHAOS_PG_SYNCHRONOUS_COMMIT=off` shows what this test catches: PostgreSQL then
/// answers commits before their WAL is written, and a kill loses loaded rows.

@Suite("Chaos end to end", .serialized)
struct ChaosEndToEndTests {
    static var events: Int { Int(ProcessInfo.processInfo.environment["SLUICE_CHAOS_EVENTS"] ?? "") ?? 12_000 }
    static let partSize = 2_000
    static let victims = ["ingest", "validate", "enrich", "transform", "load", "quarantine", "jobs", "redis", "postgres"]
    static var maxRounds: Int { max(1, Int(ProcessInfo.processInfo.environment["SLUICE_CHAOS_ROUNDS"] ?? "") ?? 1) }

    /// Whether the client has had every upload answered.
    actor Uploading {
        var done = false
        func finish() { done = true }
    }

    /// One upload of the run: its workload, and the job the client was answered 202 for.
    struct Part: Sendable {
        let index: Int
        let workload: GeneratedWorkload
        var job: String?
        var refusedAttempts = 0
    }

    @Test func killingAnyProcessLosesNothingAndLoadsNothingTwice() async throws {
        let base = try TestEnvironment.get()
        let script = try #require(base.serversScript, "SLUICE_SERVERS_SCRIPT is not set: run with `make test` or `make chaos`")
        let serversDirectory = try makeTemporaryDirectory("chaos-servers")
        let started = try await runCommand("/bin/bash", [script, "start", serversDirectory],
                                           environment: ["SLUICE_REDIS_APPENDFSYNC": "always",
                                                         "SLUICE_PG_SYNCHRONOUS_COMMIT": ProcessInfo.processInfo.environment["SLUICE_CHAOS_PG_SYNCHRONOUS_COMMIT"] ?? "on"])
        try #require(started.status == 0, "servers.sh start failed: \(started.error)")
        let result: Result<Void, any Error>
        do {
            result = .success(try await run(servers: try base.with(serversEnv: "\(serversDirectory)/env"), script: script, directory: serversDirectory))
        } catch {
            result = .failure(error)
        }
        _ = try? await runCommand("/bin/bash", [script, "stop", serversDirectory])
        try result.get()
    }

    func run(servers: TestEnvironment, script: String, directory serversDirectory: String) async throws {
        let manifests = try PipelineFixture.pipelineManifests(overrides: [
            // A client's upload cut off by a killed ingest fails soon, so that the client's retry is the only job.
            "ingest": [("upload_lease: 60s", "upload_lease: 2s"), ("reap_interval: 15s", "reap_interval: 1s")],
        ])
        try await PipelineFixture.with(db: 0, manifests: manifests, servers: servers) { fixture in
            try await fixture.startPipeline()
            let count = max(Self.partSize, Self.events / Self.partSize * Self.partSize)
            var made: [Part] = []
            for index in 0..<(count / Self.partSize) {
                // A seed per part: each part's duplicates are its own, so each has exact expectations.
                let workload = try await GeneratedWorkload.make(count: Self.partSize, seed: 9_000 + index, format: "ndjson", in: fixture.directory)
                made.append(Part(index: index, workload: workload))
            }
            let parts = made
            let ingestURL = fixture.url("ingest", "/api/v1/ingest")
            // The kills take about 2.5 s each; the uploads are spread over at least that long.
            let pace = Duration.milliseconds(Self.victims.count * 2_500 / parts.count)

            let uploading = Uploading()
            var kills = 0
            let uploaded = try await withThrowingTaskGroup(of: ([Part]?, Int).self) { group in
                group.addTask {
                    var done: [Part] = []
                    for var part in parts {
                        // A client that retries until it is answered 202.
                        while part.job == nil {
                            if let job = try await Self.upload(part.workload.path, to: ingestURL) {
                                part.job = job
                            } else {
                                part.refusedAttempts += 1
                                guard part.refusedAttempts < 120 else { throw TestSetupError("part \(part.index) was refused 120 times") }
                                try await Task.sleep(for: .milliseconds(500))
                            }
                        }
                        done.append(part)
                        try await Task.sleep(for: pace)
                    }
                    await uploading.finish()
                    return (done, 0)
                }
                group.addTask {
                    var kills = 0, rounds = 0
                    while true {
                        for victim in Self.victims {
                            try await Task.sleep(for: .seconds(2))
                            try await Self.kill(victim, fixture: fixture, script: script, serversDirectory: serversDirectory)
                            kills += 1
                        }
                        rounds += 1
                        if rounds >= Self.maxRounds { break }
                        if await uploading.done, try await Self.openJobs(fixture) == 0 { break }
                    }
                    return (nil, kills)
                }
                var done: [Part] = []
                for try await (result, killed) in group {
                    if let result { done = result }
                    kills += killed
                }
                return done
            }
            #expect(uploaded.count == parts.count)

            // Every job ends: the answered ones complete, the cut-off ones fail.
            let deadline = ContinuousClock.now + .seconds(300)
            var open = -1
            while ContinuousClock.now < deadline {
                open = try await Self.openJobs(fixture)
                var live = 0
                for part in uploaded {
                    let status = try? await fixture.job(part.job!)["status"]?.stringValue
                    if status != "completed", status != "failed" { live += 1 }
                }
                if open == 0, live == 0 { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(open == 0, "jobs still open after 300 s")

            // Exact accounting, part by part.
            let names = ["loaded", "quarantined", "stale", "duplicate", "no_consent"]
            let answered = Set(uploaded.compactMap(\.job))
            var others: [(id: String, job: JSONValue)] = []
            for row in try await fixture.clients.postgres.query("SELECT id::text FROM jobs").rows {
                guard let id = row[0], !answered.contains(id) else { continue }
                others.append((id, try await fixture.job(id)))
            }
            var expectedLoaded = 0
            for part in uploaded {
                let job = try await fixture.job(part.job!)
                expectedLoaded += part.workload.expected["loaded"] ?? 0
                #expect(job["status"]?.stringValue == "completed", "part \(part.index): \(job.serializedString)")
                #expect(job.count("failed") == 0, "part \(part.index) has dead-lettered events: \(job.serializedString)")
                #expect(job.count("in_flight") == 0, "part \(part.index): \(job.serializedString)")
                #expect(job.count("received") == part.workload.count, "part \(part.index)")
                let matches = { (job: JSONValue) in names.allSatisfy { job.count($0) == (part.workload.expected[$0] ?? 0) } }
                if !matches(job) {
                    // The one case a client cannot tell apart: ingest killed after recording the
                    // upload, before the 202 went out. The first job then holds the part, and
                    // the client's retry found every event a duplicate.
                    let first = others.first { $0.job["status"]?.stringValue == "completed" && matches($0.job) }
                    #expect(first != nil && job.count("loaded") == 0,
                            "part \(part.index) counts \(job["counts"]?.serializedString ?? "") differ from \(part.workload.expected)")
                }
                let quarantineRows = try await fixture.clients.postgres.query(
                    "SELECT count(*) FROM quarantine WHERE job_id = \(part.job!)::uuid").scalar
                #expect(quarantineRows == String(job.count("quarantined")), "part \(part.index): quarantine rows")
            }
            // Uploads cut off by a kill failed, and nothing of them stayed in the warehouse.
            for other in others where other.job["status"]?.stringValue != "completed" {
                #expect(other.job["status"]?.stringValue == "failed", "\(other.id): \(other.job.serializedString)")
                #expect(try await fixture.warehouseRows(job: other.id) == 0, "\(other.id) failed but left rows")
            }
            let rows = try await fixture.clients.postgres.query("SELECT count(*), count(DISTINCT event_id) FROM events").rows.first
            #expect(rows == ["\(expectedLoaded)", "\(expectedLoaded)"], "the warehouse holds \(rows ?? []) rows (all, distinct) of \(expectedLoaded)")
            for (name, process) in fixture.processes {
                #expect(process.isRunning, "\(name) is not running at the end:\n\(process.tail(10))")
            }
            let refused = uploaded.map(\.refusedAttempts).reduce(0, +)
            print("chaos: \(count) events in \(uploaded.count) uploads, \(kills) kills, \(refused) uploads refused and retried, \(others.count) jobs cut off")
        }
    }

    /// Jobs not yet ended (-1 while PostgreSQL cannot answer).
    static func openJobs(_ fixture: PipelineFixture) async throws -> Int {
        guard let rows = try? await fixture.clients.postgres.query("SELECT count(*) FROM jobs WHERE status IN ('received', 'processing')")
        else { return -1 }
        return Int(rows.scalar ?? "") ?? -1
    }

    /// Uploads the file with curl; the job id when answered 202, nil when refused or cut off.
    static func upload(_ path: String, to url: String) async throws -> String? {
        let result = try await runCommand("/usr/bin/curl", [
            "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/x-ndjson",
            "-H", "\(TestCaller.header): \(TestCaller.assertion(method: "POST", url: url))",
            "--max-time", "60", "--data-binary", "@\(path)", url,
        ], timeout: .seconds(90))
        guard result.status == 0, let split = result.output.lastIndex(of: "\n"),
              result.output[result.output.index(after: split)...] == "202" else { return nil }
        return try JSONParser().parse(Array(result.output[..<split].utf8))["job_id"]?.stringValue
    }

    /// `kill -9` of a function's process (restarted on its port) or of a server (restarted on its data).
    static func kill(_ victim: String, fixture: PipelineFixture, script: String, serversDirectory: String) async throws {
        switch victim {
        case "redis", "postgres":
            let killed = try await runCommand("/bin/bash", [script, "kill-\(victim)", serversDirectory])
            try #require(killed.status == 0, "kill-\(victim): \(killed.error)")
            try await Task.sleep(for: .milliseconds(500))
            let restarted = try await runCommand("/bin/bash", [script, "restart-\(victim)", serversDirectory])
            try #require(restarted.status == 0, "restart-\(victim): \(restarted.error)")
        default:
            let process = try #require(fixture.processes[victim])
            process.signal(SIGKILL)
            #expect(await process.waitExit(timeout: .seconds(10)) == 128 + SIGKILL, "\(victim) did not die of SIGKILL")
            try await Task.sleep(for: .milliseconds(500))
            try await fixture.start(victim)
        }
    }
}
