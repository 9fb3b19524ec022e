import Foundation
import Sluice
import SluicePostgres
import SluiceRedis
import Testing

/// Functions in other languages, each a process Sluice starts and calls over its function
/// protocol, placed in a dataset's chain with every function its own `sluice serve` process.
@Suite(.serialized) struct ProcessFunctionEndToEndTests {
    /// The shipped pipeline's manifests and examples/python-score as `score`, with the test's
    /// timeouts (and `extra` appended to its manifest).
    static func manifests(score extra: String = "") throws -> [String: String] {
        var manifests = try PipelineFixture.pipelineManifests()
        let root = try TestEnvironment.get().packageRoot
        var score = try String(contentsOfFile: "\(root)/examples/python-score/function.yaml", encoding: .utf8)
        score = score.replacingOccurrences(of: "timeout: 10s", with: "timeout: 3s")
        manifests["score"] = score + "visibility_timeout: 5s\n" + extra
        return manifests
    }

    /// Copies the example's handler beside its manifest, and puts `score` in the events'
    /// chain between transform and load, with a `score` column, as a user would: by editing
    /// datasets/events.yaml and running `sluice migrate`.
    static func install(_ fixture: PipelineFixture) async throws {
        let root = try TestEnvironment.get().packageRoot
        try FileManager.default.copyItem(atPath: "\(root)/examples/python-score/handler.py",
                                         toPath: "\(fixture.functionsDirectory)/score/handler.py")
        let file = "\(fixture.directory)/datasets/events.yaml"
        var events = try String(contentsOfFile: file, encoding: .utf8)
        for (of, with) in [("chain: [validate, enrich, transform, load]", "chain: [validate, enrich, transform, score, load]"),
                           ("  - {name: attributes, type: object}\n", "  - {name: attributes, type: object}\n  - {name: score, type: number}\n")] {
            guard events.contains(of) else { throw TestSetupError("datasets/events.yaml has no '\(of)'") }
            events = events.replacingOccurrences(of: of, with: with)
        }
        try events.write(toFile: file, atomically: true, encoding: .utf8)
        let migrate = try await runCommand(fixture.environment.binary, ["migrate"], environment: fixture.processEnvironment)
        guard migrate.status == 0 else { throw TestSetupError("sluice migrate failed: \(migrate.error)") }
    }

    /// A gen_events.py workload through validate → enrich → transform → score (Python) → load:
    /// every count is the manifest's, but for the rows score drops, which are counted under its
    /// reason; every loaded row has its score; and the Python process, behind `pii-mask`,
    /// never received any of the personal data gen_events.py planted.
    @Test func aPythonFunctionInTheChainKeepsEveryCountExact() async throws {
        let record = try makeTemporaryDirectory("score-record") + "/received.ndjson"
        try await PipelineFixture.with(db: 21, manifests: try Self.manifests(score: "environment: {SCORE_RECORD_FILE: \(record)}\n")) { fixture in
            try await Self.install(fixture)
            try await fixture.startPipeline()
            try await fixture.start("score")
            let workload = try await GeneratedWorkload.make(count: 5_000, seed: 221, format: "ndjson", in: fixture.directory)
            let upload = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(upload.status == 202, "\(upload.body)")
            let id = try #require(upload.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            let lowScore = Int(job["drops"]?["low_score"]?.intValue ?? -1)
            #expect(lowScore > 0 && lowScore < workload.expected["loaded"]!, "low_score \(lowScore)")
            #expect(job.count("loaded") + lowScore == workload.expected["loaded"])
            for name in ["quarantined", "stale", "duplicate", "no_consent"] {
                #expect(job.count(name) == workload.expected[name], "counts.\(name)")
            }
            #expect(job.count("received") == workload.count)
            #expect(try await fixture.counter("fn.score.in", jobs: [id]) == workload.expected["loaded"])
            let rows = try await fixture.clients.postgres.query(
                "SELECT count(*), count(score), coalesce(min(score), -1) >= 0.2 FROM events WHERE job_id = \(id)::uuid").rows
            #expect(rows == [["\(job.count("loaded"))", "\(job.count("loaded"))", "t"]])

            // What the Python process received: every row it scored, and none of the planted data.
            let received = try String(contentsOfFile: record, encoding: .utf8)
            let chunks = received.split(separator: "\n").compactMap { try? JSONParser().parse(Array($0.utf8)) }
            #expect(chunks.reduce(0) { $0 + ($1.arrayValue?.count ?? 0) } >= workload.expected["loaded"]!)
            #expect(workload.piiSamples.count > 10)
            for sample in workload.piiSamples {
                #expect(!received.contains(sample), "the function received planted personal data")
            }
        }
    }
}
