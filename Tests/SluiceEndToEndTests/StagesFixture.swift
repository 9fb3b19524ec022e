import Foundation
import Sluice
import SluiceRedis

/// The real pipeline from `functions/` (ingest → validate → enrich → transform → load, with
/// quarantine and jobs), each stage its own `sluice serve` process, with short visibility
/// timeouts so that a killed stage's chunks are reclaimed within the test's time.
extension PipelineFixture {
    static let stages = ["ingest", "validate", "enrich", "transform", "load", "quarantine", "jobs"]

    /// The repository's manifests, with `visibility_timeout` cut to 3 s and `overrides`
    /// replacing text (`[(of, with)]`) in the named manifests.
    static func pipelineManifests(overrides: [String: [(String, String)]] = [:]) throws -> [String: String] {
        let root = try TestEnvironment.get().packageRoot
        var manifests: [String: String] = [:]
        for name in stages {
            var text = try String(contentsOfFile: "\(root)/functions/\(name)/function.yaml", encoding: .utf8)
            for timeout in ["30s", "60s"] { text = text.replacingOccurrences(of: "visibility_timeout: \(timeout)", with: "visibility_timeout: 3s") }
            for (of, with) in overrides[name] ?? [] {
                guard text.contains(of) else { throw TestSetupError("\(name)'s manifest has no '\(of)' to override") }
                text = text.replacingOccurrences(of: of, with: with)
            }
            manifests[name] = text
        }
        return manifests
    }

    func startPipeline(except skipped: Set<String> = []) async throws {
        for name in Self.stages where !skipped.contains(name) { try await start(name) }
    }

    /// Uploads the file at `path` to ingest with curl (streamed from disk); answers the
    /// status and the parsed body.
    func upload(file path: String, contentType: String, query: String = "") async throws -> (status: Int, body: JSONValue) {
        let target = url("ingest", "/api/v1/ingest\(query)")
        let result = try await runCommand("/usr/bin/curl", [
            "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: \(contentType)",
            "-H", "\(TestCaller.header): \(TestCaller.assertion(method: "POST", url: target))",
            "--data-binary", "@\(path)", target,
        ], timeout: .seconds(300))
        guard result.status == 0, let split = result.output.lastIndex(of: "\n"), let status = Int(result.output[result.output.index(after: split)...]) else {
            throw TestSetupError("curl failed (\(result.status)): \(result.error)")
        }
        let body = String(result.output[..<split])
        return (status, (try? JSONParser().parse(Array(body.utf8))) ?? .string(body))
    }

    /// Uploads `bytes`; answers the status and the parsed body.
    func upload(bytes: Data, contentType: String) async throws -> (status: Int, body: JSONValue) {
        let response = try await HTTP.request("POST", url("ingest", "/api/v1/ingest"), body: bytes, headers: ["Content-Type": contentType])
        return (response.status, (try? JSONParser().parse(Array(response.body))) ?? .string(response.text))
    }

    /// `GET /api/v1/jobs/{id}`.
    func job(_ id: String) async throws -> JSONValue {
        let response = try await HTTP.request("GET", url("ingest", "/api/v1/jobs/\(id)"))
        guard response.status == 200 else { throw TestSetupError("GET job answered \(response.status): \(response.text)") }
        return try JSONParser().parse(Array(response.body))
    }

    /// Polls the job until its status is final; answers it.
    func waitForJob(_ id: String, timeout: Duration = .seconds(240)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            if let current = try? await job(id) {
                last = current
                if let status = current["status"]?.stringValue, ["completed", "failed", "cancelled"].contains(status) { return current }
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        var report = "job \(id) did not end within \(timeout): \(last.serializedString)"
        for (name, process) in processes { report += "\n--- \(name)\n\(process.tail(10))" }
        throw TestSetupError(report)
    }

    /// Waits until every stage's stream has no backlog.
    func waitUntilDrained(timeout: Duration = .seconds(120)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var idle = true
            for stream in Self.stages where stream != "ingest" {
                if (try? await backlog(stream)) ?? 1 > 0 { idle = false }
            }
            if idle { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSetupError("streams still hold entries after \(timeout)")
    }

    /// Rows in the warehouse for `job`.
    func warehouseRows(job: String) async throws -> Int {
        Int(try await clients.postgres.query("SELECT count(*) FROM events WHERE job_id = \(job)::uuid").scalar ?? "") ?? -1
    }

    /// Quarantine rows for `job`, by reason.
    func quarantineReasons(job: String) async throws -> [String: Int] {
        let rows = try await clients.postgres.query(
            "SELECT reason, count(*) FROM quarantine WHERE job_id = \(job)::uuid GROUP BY reason")
        var reasons: [String: Int] = [:]
        for row in rows.rows { reasons[row[0] ?? ""] = Int(row[1] ?? "") ?? 0 }
        return reasons
    }
}

/// A workload written by `../shared/bench/gen_events.py` and what a correct pipeline does with it.
/// `count` fresh events as NDJSON, ids `PREFIX-0` … (one second apart, the newest now), 40
/// users; each a click with its index in `payload.properties.n`.
func ndjsonClicks(idPrefix: String, count: Int) -> Data {
    let now = Date(), iso = ISO8601DateFormatter()
    var body = Data()
    for i in 0..<count {
        let event: JSONValue = [
            "metadata": ["event_id": .string("\(idPrefix)-\(i)"), "timestamp": .string(iso.string(from: now.addingTimeInterval(-Double(i)))),
                         "version": "1.0.0", "source": "web"],
            "user": ["id": .string("u-\(i % 40)")], "payload": ["event_type": "click", "properties": ["n": .int(Int64(i))]],
        ]
        body.append(contentsOf: event.serializedBytes + [UInt8(ascii: "\n")])
    }
    return body
}

struct GeneratedWorkload {
    let path: String
    let expected: [String: Int]
    let count: Int
    /// The personal data gen_events.py planted (`pii_samples`, at most 2,000).
    var piiSamples: [String] = []
    /// The users whose consent a correct pipeline finds withdrawn (`consent_withdrawn_users`).
    var withdrawnUsers: [String] = []

    /// Writes a workload; `noConsentRate` nil keeps gen_events.py's default rate (2 % of users withdrawn).
    static func make(count: Int, seed: Int, format: String, noConsentRate: Double? = 0, in directory: String) async throws -> GeneratedWorkload {
        let root = try TestEnvironment.get().packageRoot
        let script = "\(root)/../shared/bench/gen_events.py"
        let path = "\(directory)/events-\(seed).\(format)", manifest = "\(directory)/manifest-\(seed).json"
        let result = try await runCommand("/usr/bin/python3", [
            script, "--count", "\(count)", "--seed", "\(seed)", "--format", format, "--out", path, "--manifest", manifest,
        ] + (noConsentRate.map { ["--no-consent-rate", "\($0)"] } ?? []), timeout: .seconds(300))
        guard result.status == 0 else { throw TestSetupError("gen_events.py failed: \(result.error)") }
        let parsed = try JSONParser().parse(Array(try Data(contentsOf: URL(fileURLWithPath: manifest))))
        guard case .object(let expected)? = parsed["expected"] else { throw TestSetupError("the manifest has no 'expected'") }
        var counts: [String: Int] = [:]
        for (key, value) in expected { counts[key] = Int(value.intValue ?? -1) }
        return GeneratedWorkload(path: path, expected: counts, count: Int(parsed["count"]?.intValue ?? -1),
                                 piiSamples: parsed["pii_samples"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                                 withdrawnUsers: parsed["consent_withdrawn_users"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }
}

extension JSONValue {
    /// `counts.NAME` of a job as an Int (-1 when absent).
    func count(_ name: String) -> Int { Int(self["counts"]?[name]?.intValue ?? -1) }
}
