import Foundation
import Sluice
import SluicePostgres
import SluiceRedis

/// A pipeline of real `sluice serve` processes on the test servers:
/// intake (HTTP) → filter → tag (slowed down) → sink, each its own process, with short
/// visibility timeouts so that reclaims happen within the test's time.
final class PipelineFixture: @unchecked Sendable {
    // Mutated only from the owning test's task.
    let environment: TestEnvironment
    let db: Int
    /// The fixture's own PostgreSQL database.
    let databaseURL: String
    let directory: String
    let functionsDirectory: String
    let clients: TestClients
    let keys = StreamKeys()
    var processes: [String: SluiceProcess] = [:]
    var ports: [String: Int] = [:]
    /// Added to every process's environment (JWT settings, upstreams).
    var extraEnvironment: [String: String] = [:]

    static let chainManifests: [String: String] = [
        "intake": """
            handler: intake
            triggers: [{http: {}}]
            outputs: [filter]
            batch: 500
            """,
        "filter": """
            handler: filter
            triggers: [{stream: filter}]
            outputs: [tag]
            concurrency: 2
            visibility_timeout: 2s
            retry: {max_attempts: 5, initial_backoff: 100ms, max_backoff: 1s}
            """,
        "tag": """
            handler: stamp
            triggers: [{stream: tag}]
            outputs: [sink]
            concurrency: 2
            visibility_timeout: 2s
            retry: {max_attempts: 5, initial_backoff: 100ms, max_backoff: 1s}
            config: {delay_ms: 20}
            """,
        "sink": """
            handler: sink
            triggers: [{stream: sink}]
            concurrency: 2
            visibility_timeout: 3s
            retry: {max_attempts: 8, initial_backoff: 100ms, max_backoff: 1s}
            """,
    ]

    /// `servers` replaces the suite's Redis and PostgreSQL (the chaos test kills its own).
    init(db: Int, manifests: [String: String] = PipelineFixture.chainManifests, servers: TestEnvironment? = nil) async throws {
        environment = try servers ?? TestEnvironment.get()
        self.db = db
        directory = try makeTemporaryDirectory("e2e-db\(db)")
        functionsDirectory = "\(directory)/functions"
        // The repository's datasets, beside the functions (where `sluice` looks for them).
        try FileManager.default.copyItem(atPath: "\(environment.packageRoot)/datasets", toPath: "\(directory)/datasets")
        for (name, text) in manifests {
            try FileManager.default.createDirectory(atPath: "\(functionsDirectory)/\(name)", withIntermediateDirectories: true)
            try text.write(toFile: "\(functionsDirectory)/\(name)/function.yaml", atomically: true, encoding: .utf8)
        }
        // Each fixture has its own PostgreSQL database: the warehouse remembers every event id.
        databaseURL = try await environment.freshDatabase("sluice_e2e_\(db)")
        clients = try TestClients(environment: environment, db: db, databaseURL: databaseURL)
        try await clients.redis.send(["FLUSHDB"])
        let migrate = try await runCommand(environment.binary, ["migrate"], environment: processEnvironment)
        guard migrate.status == 0 else { throw TestSetupError("sluice migrate failed: \(migrate.error)") }
    }

    /// The key of the pseudonyms validate's `pii-mask` writes.
    static let pseudonymKey = "the end-to-end tests' pseudonym key"
    static let webhookSecret = "the end-to-end tests' webhook secret"

    var processEnvironment: [String: String] {
        [
            "SLUICE_REDIS_URL": environment.redisURL(db: db),
            "SLUICE_DATABASE_URL": databaseURL,
            "SLUICE_FUNCTIONS_DIR": functionsDirectory,
            "SLUICE_LOG_LEVEL": ProcessInfo.processInfo.environment["SLUICE_TEST_LOG_LEVEL"] ?? "info",
            "SLUICE_PSEUDONYM_KEY": Self.pseudonymKey,
            "SLUICE_WEBHOOK_SECRET": Self.webhookSecret,
        ].merging(extraEnvironment) { $1 }
    }

    /// Starts `sluice serve NAME` and waits until it is ready.
    /// `alias` names a second process of the same function (`gateway-2`); `environment` is
    /// added to this process's environment only.
    @discardableResult
    func start(_ name: String, as alias: String? = nil, environment extra: [String: String] = [:]) async throws -> SluiceProcess {
        let key = alias ?? name
        let port = ports[key] ?? freePort()
        ports[key] = port
        let process = try SluiceProcess.serve(name, port: port, environment: processEnvironment.merging(extra) { $1 },
                                              in: directory, binary: environment.binary)
        processes[key] = process
        try await process.waitReady()
        return process
    }

    func url(_ name: String, _ path: String) -> String { "http://127.0.0.1:\(ports[name]!)\(path)" }

    /// Uploads NDJSON to intake; answers the job id.
    func upload(_ events: [JSONValue]) async throws -> String {
        var body = [UInt8]()
        for event in events {
            event.write(into: &body)
            body.append(UInt8(ascii: "\n"))
        }
        let response = try await HTTP.request("POST", url("intake", "/intake"), body: Data(body),
                                              headers: ["Content-Type": "application/x-ndjson"])
        guard response.status == 202, case .object(let object) = try JSONParser().parse(Array(response.body)),
              let job = object["job_id"]?.stringValue
        else { throw TestSetupError("upload answered \(response.status): \(response.text)") }
        return job
    }

    /// Rows in `sink_events` for `jobs`: total and distinct event ids.
    func sinkCounts(jobs: [String]) async throws -> (rows: Int, distinct: Int) {
        let rows = try await clients.postgres.query(
            "SELECT count(*), count(DISTINCT event_id) FROM sink_events WHERE job_id = ANY(\("{" + jobs.joined(separator: ",") + "}")::uuid[])")
        return (Int(rows.rows[0][0] ?? "0") ?? 0, Int(rows.rows[0][1] ?? "0") ?? 0)
    }

    /// Pending (delivered, unacknowledged) plus undelivered entries of `function`'s group.
    func backlog(_ function: String) async throws -> Int {
        guard let state = try await clients.redis.groupState(stream: keys.stream(function), group: function) else {
            // No consumer has started yet: everything in the stream is waiting for one.
            return Int(try await clients.redis.send(["XLEN", RedisArgument(keys.stream(function))]).int ?? 0)
        }
        return state.lag + state.pending
    }

    /// Sums counter `field` over the jobs' Redis counters.
    func counter(_ field: String, jobs: [String]) async throws -> Int {
        var total = 0
        for job in jobs {
            total += Int(try await clients.redis.send(["HGET", RedisArgument(keys.job(job)), RedisArgument(field)]).int ?? 0)
        }
        return total
    }

    /// Waits until the sink holds `expected` rows for `jobs` and no stream has a backlog.
    func waitUntilDone(jobs: [String], expected: Int, streams: [String], timeout: Duration = .seconds(240)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = (rows: -1, distinct: -1)
        while ContinuousClock.now < deadline {
            do {
                last = try await sinkCounts(jobs: jobs)
                if last.rows >= expected {
                    var idle = true
                    for stream in streams where try await backlog(stream) > 0 { idle = false }
                    if idle { return }
                }
            } catch {
                // A server may be restarting (the test restarts Redis): look again shortly.
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        var report = "sink has \(last.rows) rows (\(last.distinct) distinct) of \(expected) after \(timeout)"
        for stream in streams { report += "; \(stream) backlog \((try? await backlog(stream)) ?? -1)" }
        for (name, process) in processes { report += "\n--- \(name)\n\(process.tail(15))" }
        throw TestSetupError(report)
    }

    /// Runs `body` with a new fixture and stops its processes afterwards, whether it threw or not;
    /// its directory is removed when `body` returned (see `SLUICE_KEEP_TEST_DIRS`).
    static func with(db: Int, manifests: [String: String] = PipelineFixture.chainManifests, servers: TestEnvironment? = nil,
                     _ body: (PipelineFixture) async throws -> Void) async throws {
        let fixture = try await PipelineFixture(db: db, manifests: manifests, servers: servers)
        let result: Result<Void, any Error>
        do { result = .success(try await body(fixture)) } catch { result = .failure(error) }
        await fixture.stopAll()
        // The directory (manifests, process logs, uploads) is kept when `body` threw, or for every
        // test with SLUICE_KEEP_TEST_DIRS=1 (a failed #expect does not throw: rerun with it set).
        if case .success = result, ProcessInfo.processInfo.environment["SLUICE_KEEP_TEST_DIRS"] != "1" {
            try? FileManager.default.removeItem(atPath: fixture.directory)
        }
        try result.get()
    }

    func stopAll() async {
        for process in processes.values { await process.stop() }
        await clients.shutdown()
    }
}

/// Events for the proving chain, and what the chain must do with them.
struct Workload {
    let events: [JSONValue]
    let expectedSunk: Int
    let expectedDropped: Int
    let expectedQuarantined: Int

    /// `count` events: every 97th (from 3) has no id (quarantined as `missing_id`), every 50th
    /// (from 7) among the rest is marked `drop` (dropped as `filtered`), the rest reach the sink.
    init(count: Int, prefix: String) {
        var events: [JSONValue] = []
        events.reserveCapacity(count)
        var sunk = 0, dropped = 0, quarantined = 0
        for i in 0..<count {
            var object: JSONObject = [
                "seq": .int(Int64(i)),
                "payload": ["text": .string("event \(i) of \(prefix): lorem ipsum dolor sit amet"), "value": .double(Double(i) / 8)],
            ]
            if i % 97 == 3 {
                quarantined += 1
            } else {
                object["id"] = .string("\(prefix)-\(i)")
                if i % 50 == 7 {
                    object["drop"] = true
                    dropped += 1
                } else {
                    sunk += 1
                }
            }
            events.append(.object(object))
        }
        self.events = events
        expectedSunk = sunk
        expectedDropped = dropped
        expectedQuarantined = quarantined
    }
}
