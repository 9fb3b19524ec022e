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

    /// The examples in other languages beside the shipped pipeline: python-score as `score`,
    /// node-tag as `tag` and python-lambda as `review` (started with the test's Python, which
    /// has awslambdaric), each with the test's timeouts.
    static func allManifests(score extra: String = "") throws -> [String: String] {
        var manifests = try manifests(score: extra)
        let root = try TestEnvironment.get().packageRoot
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw TestSetupError("SLUICE_PYTHON is not set: make test installs the Python tools, awslambdaric among them (scripts/python-tools.sh)")
        }
        for (name, example) in [("tag", "node-tag"), ("review", "python-lambda")] {
            var text = try String(contentsOfFile: "\(root)/examples/\(example)/function.yaml", encoding: .utf8)
            text = text.replacingOccurrences(of: "timeout: 10s", with: "timeout: 3s")
                .replacingOccurrences(of: "command: [python3,", with: "command: [\(python),")
            manifests[name] = text + "visibility_timeout: 5s\n"
        }
        return manifests
    }

    /// Copies the example's handler beside its manifest, and puts `score` in the events'
    /// chain between transform and load, with a `score` column, as a user would: by editing
    /// datasets/events.yaml and running `sluice migrate`.
    static func install(_ fixture: PipelineFixture, chain: String = "score", columns: String = "  - {name: score, type: number}\n") async throws {
        let root = try TestEnvironment.get().packageRoot
        for (name, example, file) in [("score", "python-score", "handler.py"), ("tag", "node-tag", "handler.js"), ("review", "python-lambda", "handler.py")]
        where FileManager.default.fileExists(atPath: "\(fixture.functionsDirectory)/\(name)") {
            try FileManager.default.copyItem(atPath: "\(root)/examples/\(example)/\(file)", toPath: "\(fixture.functionsDirectory)/\(name)/\(file)")
        }
        let file = "\(fixture.directory)/datasets/events.yaml"
        var events = try String(contentsOfFile: file, encoding: .utf8)
        for (of, with) in [("chain: [validate, enrich, transform, load]", "chain: [validate, enrich, transform, \(chain), load]"),
                           ("  - {name: attributes, type: object}\n", "  - {name: attributes, type: object}\n" + columns)] {
            guard events.contains(of) else { throw TestSetupError("datasets/events.yaml has no '\(of)'") }
            events = events.replacingOccurrences(of: of, with: with)
        }
        try events.write(toFile: file, atomically: true, encoding: .utf8)
        let migrate = try await runCommand(fixture.environment.binary, ["migrate"], environment: fixture.processEnvironment)
        guard migrate.status == 0 else { throw TestSetupError("sluice migrate failed: \(migrate.error)") }
    }

    /// A gen_events.py workload through validate → enrich → transform → score (Python) → tag
    /// (Node) → load: every count is the manifest's, but for the rows score and tag drop, which
    /// are counted under their reasons; every loaded row has its score and tier; and the Python
    /// process, behind `pii-mask`, never received any of the personal data gen_events.py planted.
    @Test func aPythonAndANodeFunctionInTheChainKeepEveryCountExact() async throws {
        let record = try makeSharedDirectory("score-record") + "/received.ndjson"
        try await PipelineFixture.with(db: 21, manifests: try Self.allManifests(score: "environment: {SCORE_RECORD_FILE: \(record)}\n")) { fixture in
            try await Self.install(fixture, chain: "score, tag",
                                   columns: "  - {name: score, type: number}\n  - {name: tier, type: string}\n")
            try await fixture.startPipeline()
            try await fixture.start("score")
            try await fixture.start("tag")
            let workload = try await GeneratedWorkload.make(count: 5_000, seed: 221, format: "ndjson", in: fixture.directory)
            let upload = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(upload.status == 202, "\(upload.body)")
            let id = try #require(upload.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            let lowScore = Int(job["drops"]?["low_score"]?.intValue ?? -1)
            let notBillable = Int(job["drops"]?["not_billable"]?.intValue ?? -1)
            #expect(lowScore > 0 && notBillable > 0 && lowScore + notBillable < workload.expected["loaded"]!, "low_score \(lowScore), not_billable \(notBillable)")
            #expect(job.count("loaded") + lowScore + notBillable == workload.expected["loaded"])
            for name in ["quarantined", "stale", "duplicate", "no_consent"] {
                #expect(job.count(name) == workload.expected[name], "counts.\(name)")
            }
            #expect(job.count("received") == workload.count)
            #expect(try await fixture.counter("fn.score.in", jobs: [id]) == workload.expected["loaded"])
            #expect(try await fixture.counter("fn.tag.in", jobs: [id]) == workload.expected["loaded"]! - lowScore)
            let rows = try await fixture.clients.postgres.query("""
                SELECT count(*), count(score), coalesce(min(score), -1) >= 0.2, count(*) FILTER (WHERE tier = 'high' AND score >= 0.8),
                       count(*) FILTER (WHERE tier = 'standard' AND score < 0.8), count(*) FILTER (WHERE event_type = 'logout')
                FROM events WHERE job_id = \(id)::uuid
                """).rows
            let loaded = job.count("loaded")
            #expect(rows.count == 1 && rows[0][0] == "\(loaded)" && rows[0][1] == "\(loaded)" && rows[0][2] == "t" && rows[0][5] == "0", "\(rows)")
            #expect(rows.count == 1 && (Int(rows[0][3] ?? "") ?? 0) + (Int(rows[0][4] ?? "") ?? 0) == loaded, "every row has its tier: \(rows)")

            // What the Python process received: every row it scored, and none of the planted data.
            let received = try String(contentsOfFile: record, encoding: .utf8)
            let chunks = received.split(separator: "\n").compactMap { try? JSONParser().parse(Array($0.utf8)) }
            #expect(chunks.reduce(0) { $0 + ($1.arrayValue?.count ?? 0) } >= workload.expected["loaded"]!)
            #expect(workload.piiSamples.count > 10)
            // grep -F looks for every sample in one pass (exit status 1: none found).
            let samples = record + ".samples"
            try workload.piiSamples.joined(separator: "\n").write(toFile: samples, atomically: true, encoding: .utf8)
            let search = try await runCommand("/usr/bin/grep", ["-F", "-c", "-f", samples, record])
            #expect(search.status == 1 && search.output == "0\n", "the function received planted personal data: \(search.output)")
        }
    }

    /// examples/python-lambda, a handler written for AWS Lambda's SQS batches, run unmodified by
    /// the unmodified awslambdaric under Sluice's Runtime API, between transform and load: the
    /// records it names in batchItemFailures (sign-ins) are quarantined under
    /// function_item_failed and every other count is the manifest's. Then its process is
    /// killed mid-run, and a second upload still ends with every event accounted for.
    @Test func anUnmodifiedLambdaHandlerRunsUnderTheRuntimeAPI() async throws {
        try await PipelineFixture.with(db: 24, manifests: try Self.allManifests()) { fixture in
            try await Self.install(fixture, chain: "review", columns: "")
            try await fixture.startPipeline()
            let review = try await fixture.start("review")
            let workload = try await GeneratedWorkload.make(count: 3_000, seed: 224, format: "ndjson", in: fixture.directory)
            let upload = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            let id = try #require(upload.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            let reasons = try await fixture.quarantineReasons(job: id)
            let failed = reasons["function_item_failed"] ?? 0
            #expect(failed > 0 && failed < workload.expected["loaded"]!, "\(reasons)")
            #expect(job.count("loaded") + failed == workload.expected["loaded"])
            #expect(job.count("quarantined") == workload.expected["quarantined"]! + failed)
            for name in ["stale", "duplicate", "no_consent"] {
                #expect(job.count(name) == workload.expected[name], "counts.\(name)")
            }
            let rows = try await fixture.clients.postgres.query(
                "SELECT count(*), count(*) FILTER (WHERE event_type = 'login') FROM events WHERE job_id = \(id)::uuid").rows
            #expect(rows == [["\(job.count("loaded"))", "0"]])
            // The records quarantined are the sign-ins, as the handler received them.
            let held = try await fixture.clients.postgres.query(
                "SELECT count(*) FROM quarantine WHERE job_id = \(id)::uuid AND reason = 'function_item_failed' AND raw LIKE '%\"login\"%'").rows
            #expect(held == [["\(failed)"]])
            #expect(review.log.contains("function process ready"))

            // kill -9 of the handler's process during a second run: the chunk it held is retried.
            let second = try await GeneratedWorkload.make(count: 20_000, seed: 225, format: "ndjson", in: fixture.directory)
            let again = try await fixture.upload(file: second.path, contentType: "application/x-ndjson")
            let secondID = try #require(again.body["job_id"]?.stringValue)
            var killed = false
            for _ in 0..<400 where !killed {
                if try await fixture.counter("fn.review.in", jobs: [secondID]) > 2_000, let child = Self.childPID(in: review.log) {
                    killed = kill(child, SIGKILL) == 0
                }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(killed, "the handler's process was not killed mid-run")
            let secondJob = try await fixture.waitForJob(secondID)
            #expect(secondJob["status"]?.stringValue == "completed")
            let secondFailed = try await fixture.quarantineReasons(job: secondID)["function_item_failed"] ?? 0
            #expect(secondJob.count("loaded") + secondFailed == second.expected["loaded"])
            #expect(secondJob.count("quarantined") == second.expected["quarantined"]! + secondFailed)
            #expect(secondJob.count("duplicate") == second.expected["duplicate"])
            #expect(review.log.components(separatedBy: "function process started").count - 1 >= 2, "restarted after the kill")
        }
    }

    /// examples/swift-risk, a package outside Sources/ that depends on Sluice by path and builds
    /// its own binary with a CodableFunction registered: that binary serves every stage of the
    /// shipped pipeline and `risk` between transform and load, with the manifest's exact counts,
    /// sign-ups counted under `not_scored`, and every loaded row scored.
    @Test func aSwiftPackageOfItsOwnServesThePipelineAndItsFunction() async throws {
        let root = try TestEnvironment.get().packageRoot
        let binary = ProcessInfo.processInfo.environment["SLUICE_SWIFT_EXAMPLE_BIN"] ?? "\(root)/examples/swift-risk/.build/debug/risk-sluice"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestSetupError("\(binary) is missing: build it with `swift build --package-path examples/swift-risk` (make test does)")
        }
        var manifests = try PipelineFixture.pipelineManifests()
        manifests["risk"] = try String(contentsOfFile: "\(root)/examples/swift-risk/functions/risk/function.yaml", encoding: .utf8)
            + "visibility_timeout: 5s\n"
        try await PipelineFixture.with(db: 25, manifests: manifests, servers: try TestEnvironment.get().with(binary: binary)) { fixture in
            try await Self.install(fixture, chain: "risk", columns: "  - {name: risk, type: number}\n")
            try await fixture.startPipeline()
            let risk = try await fixture.start("risk")
            let workload = try await GeneratedWorkload.make(count: 3_000, seed: 225, format: "ndjson", in: fixture.directory)
            let upload = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            let id = try #require(upload.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            let notScored = Int(job["drops"]?["not_scored"]?.intValue ?? -1)
            #expect(notScored > 0 && notScored < workload.expected["loaded"]!, "not_scored \(notScored)")
            #expect(job.count("loaded") + notScored == workload.expected["loaded"])
            for name in ["quarantined", "stale", "duplicate", "no_consent"] {
                #expect(job.count(name) == workload.expected[name], "counts.\(name)")
            }
            let rows = try await fixture.clients.postgres.query("""
                SELECT count(*), count(risk), count(*) FILTER (WHERE risk BETWEEN 0 AND 1), count(*) FILTER (WHERE event_type = 'signup'),
                       count(*) FILTER (WHERE event_type = 'purchase' AND risk > 0)
                FROM events WHERE job_id = \(id)::uuid
                """).rows
            let loaded = "\(job.count("loaded"))"
            #expect(rows.count == 1 && rows[0][0] == loaded && rows[0][1] == loaded && rows[0][2] == loaded && rows[0][3] == "0", "\(rows)")
            #expect(rows.count == 1 && (Int(rows[0][4] ?? "") ?? 0) > 0, "purchases are scored: \(rows)")
            #expect(risk.log.contains("\"functions\":\"risk\""), "the package's own binary serves risk")
        }
    }

    /// `sluice invoke` on a Lambda handler: its partial-batch result becomes outcomes; a handler
    /// that raises fails the call as retryable `function_failed`, naming the error's type and not
    /// its message (which may quote the events).
    @Test func invokingALambdaHandlerReadsItsResultAndItsErrors() async throws {
        let environment = try TestEnvironment.get()
        let python = try #require(ProcessInfo.processInfo.environment["SLUICE_PYTHON"])
        let functions = try makeTemporaryDirectory("lambda-invoke") + "/functions"
        try FileManager.default.createDirectory(atPath: "\(functions)/review", withIntermediateDirectories: true)
        let manifest = try String(contentsOfFile: "\(environment.packageRoot)/examples/python-lambda/function.yaml", encoding: .utf8)
            .replacingOccurrences(of: "command: [python3,", with: "command: [\(python),")
            .replacingOccurrences(of: "middleware: [pii-mask]\n", with: "")
        try manifest.write(toFile: "\(functions)/review/function.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: "\(environment.packageRoot)/examples/python-lambda/handler.py", toPath: "\(functions)/review/handler.py")
        let events = Data(#"[{"event_type": "purchase"}, {"event_type": "login", "note": "secret-note-42"}]"#.utf8)
        let variables = ["SLUICE_FUNCTIONS_DIR": functions, "PATH": "/usr/local/bin:/usr/bin:/bin", "SLUICE_LOG_LEVEL": "warning"]
        let invoked = try await runCommand(environment.binary, ["invoke", "review"], environment: variables, input: events)
        #expect(invoked.status == 0, "\(invoked.error)")
        let outcomes = try JSONParser().parse(Array(invoked.output.utf8))["outcomes"]
        #expect(outcomes?[0]?["outcome"] == "forward" && outcomes?[1]?["outcome"] == "quarantine", "\(invoked.output)")
        #expect(outcomes?[1]?["reason"] == "function_item_failed", "\(invoked.output)")

        // The same handler, made to raise on every batch.
        let handler = "\(functions)/review/handler.py"
        try (try String(contentsOfFile: handler, encoding: .utf8) + "\n\ndef handler(event, context):\n    raise KeyError('secret-note-42')\n")
            .write(toFile: handler, atomically: true, encoding: .utf8)
        let raised = try await runCommand(environment.binary, ["invoke", "review"], environment: variables, input: events)
        #expect(raised.status != 0)
        // Sluice's own line (the handler's traceback, on the same standard error, is its own).
        let line = raised.error.split(separator: "\n").first { $0.hasPrefix("Error: review failed") } ?? ""
        #expect(line == "Error: review failed: retryable function_failed: the handler raised KeyError", "\(raised.error)")
    }

    /// The shape `sluice render` deploys: each function's process runs beside its Sluice process
    /// (a sidecar), not started by it: Sluice calls score's at SLUICE_FUNCTION_URL, and serves
    /// review's awslambdaric the Runtime API on SLUICE_LAMBDA_API_PORT. The counts are exact.
    @Test func theSidecarShapeRenderedForAPodRuns() async throws {
        try await PipelineFixture.with(db: 28, manifests: try Self.allManifests()) { fixture in
            try await Self.install(fixture, chain: "score, review", columns: "  - {name: score, type: number}\n")
            let python = try #require(ProcessInfo.processInfo.environment["SLUICE_PYTHON"])
            let token = "sidecar-token-\(UInt64.random(in: 1...UInt64.max))"
            let scorePort = freePort(), apiPort = freePort()
            let log = "\(fixture.directory)/sidecars.log"
            let scoreProcess = try Child("/bin/sh", ["-c", "cd \(fixture.functionsDirectory)/score && exec python3 handler.py"],
                                         environment: ["PORT": "\(scorePort)", "SLUICE_FUNCTION_TOKEN": token], stdout: log, stderr: log)
            defer {
                kill(scoreProcess.pid, SIGKILL)
                _ = scoreProcess.poll()
            }
            try await fixture.startPipeline()
            let score = try await fixture.start("score", environment: ["SLUICE_FUNCTION_URL": "http://127.0.0.1:\(scorePort)", "SLUICE_FUNCTION_TOKEN": token])
            let review = try await fixture.start("review", environment: ["SLUICE_LAMBDA_API_PORT": "\(apiPort)"])
            // The runtime client polls once the API listens (in a pod, its container restarts until then).
            let reviewProcess = try Child("/bin/sh", ["-c", "cd \(fixture.functionsDirectory)/review && exec \(python) -m awslambdaric handler.handler"],
                                          environment: ["AWS_LAMBDA_RUNTIME_API": "127.0.0.1:\(apiPort)", "AWS_LAMBDA_FUNCTION_NAME": "review"],
                                          stdout: log, stderr: log)
            defer {
                kill(reviewProcess.pid, SIGKILL)
                _ = reviewProcess.poll()
            }
            let workload = try await GeneratedWorkload.make(count: 2_000, seed: 228, format: "ndjson", in: fixture.directory)
            let upload = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            let id = try #require(upload.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            let lowScore = Int(job["drops"]?["low_score"]?.intValue ?? -1)
            let failed = try await fixture.quarantineReasons(job: id)["function_item_failed"] ?? 0
            #expect(lowScore > 0 && failed > 0, "low_score \(lowScore), function_item_failed \(failed)")
            #expect(job.count("loaded") + lowScore + failed == workload.expected["loaded"])
            #expect(job.count("quarantined") == workload.expected["quarantined"]! + failed)
            // Neither Sluice process started a process of its own.
            #expect(!score.log.contains("function process started") && !review.log.contains("function process started"))
            #expect(scoreProcess.isRunning && reviewProcess.isRunning)
        }
    }

    /// `sluice process NAME` serves a Swift function over the protocol (401 without the token,
    /// 400 for a body that is not a request, the outcomes otherwise); `sluice invoke` calls the
    /// benchmark's no-op in process, in Python and in Swift alike, and `--repeat` times the calls.
    @Test func aSwiftFunctionServedOverTheProtocolAndTheHopTimed() async throws {
        let environment = try TestEnvironment.get()
        let functions = "\(environment.packageRoot)/bench/functions"
        let directory = try makeTemporaryDirectory("process-command")
        let port = freePort(), token = "process-command-token-0123456789"
        let log = "\(directory)/process.log"
        let server = try Child(environment.binary, ["process", "noop"], environment: [
            "PORT": "\(port)", "SLUICE_FUNCTION_TOKEN": token, "SLUICE_FUNCTIONS_DIR": functions,
        ], stdout: log, stderr: log)
        defer {
            kill(server.pid, SIGKILL)
            _ = server.poll()
        }
        try await waitForListener(port)
        let url = "http://127.0.0.1:\(port)/"
        let request = #"{"protocol":1,"function":"noop","chunk_id":"1-0","attempt":1,"events":[{"id":"a"},{"id":"b","drop":true}]}"#
        #expect(try await HTTP.request("POST", url, body: Data(request.utf8), headers: ["Content-Type": "application/json"]).status == 401)
        #expect(try await HTTP.request("POST", url, body: Data(request.utf8), headers: ["Authorization": "Bearer wrong-token-0123456789"]).status == 401)
        #expect(try await HTTP.request("POST", url, body: Data("{}".utf8), headers: ["Authorization": "Bearer \(token)"]).status == 400)
        let answer = try await HTTP.request("POST", url, body: Data(request.utf8), headers: ["Authorization": "Bearer \(token)"])
        #expect(answer.status == 200)
        let outcomes = try JSONParser().parse(Array(answer.body))["outcomes"]
        // Forwarded unchanged: a bare forward (the caller keeps its own copy of the event).
        #expect(outcomes?[0] == ["outcome": "forward"], "\(answer.text)")
        #expect(outcomes?[1] == ["outcome": "drop", "reason": "filtered"], "\(answer.text)")

        // The same no-op in process, in Python and in Swift, through `sluice invoke`.
        let events = "\(directory)/events.ndjson"
        try #"{"id":"x"}"#.appending("\n").write(toFile: events, atomically: true, encoding: .utf8)
        let binaryFolder = (environment.binary as NSString).deletingLastPathComponent
        let invokeEnvironment = ["SLUICE_FUNCTIONS_DIR": functions, "PATH": "\(binaryFolder):/usr/local/bin:/usr/bin:/bin", "SLUICE_LOG_LEVEL": "warning"]
        for function in ["noop", "noop-python", "noop-swift"] {
            let invoked = try await runCommand(environment.binary, ["invoke", function, "--file", events], environment: invokeEnvironment)
            #expect(invoked.status == 0, "\(function): \(invoked.error)")
            let result = try JSONParser().parse(Array(invoked.output.utf8))
            #expect(result["outcomes"]?[0]?["outcome"] == "forward", "\(function): \(invoked.output)")
            let timed = try await runCommand(environment.binary, ["invoke", function, "--file", events, "--repeat", "20"], environment: invokeEnvironment)
            let timings = try JSONParser().parse(Array(timed.output.utf8))
            #expect(timings["calls"] == 20 && timings["events"] == 1, "\(function): \(timed.output) \(timed.error)")
            let p50 = timings["p50_ms"]?.doubleValue ?? -1, p90 = timings["p90_ms"]?.doubleValue ?? -1
            #expect(p50 > 0 && p90 >= p50, "\(function): \(timed.output)")
        }
    }

    /// One record forwarded as several: a Python function splits each order into its line
    /// items (`"events": [...]`), validate checks each line against the dataset, load writes
    /// them. The job counts the lines it added and completes only once every line is settled.
    @Test func anOrderForwardedAsItsLineItemsIsAccountedLineByLine() async throws {
        var manifests = try PipelineFixture.pipelineManifests()
        // First in a chain declared through the API: it masks personal data (issue 31).
        manifests["split"] = """
            runtime: {command: [python3, split.py], timeout: 3s}
            triggers: [{stream: split}]
            middleware: [pii-mask]
            visibility_timeout: 5s
            """
        try await PipelineFixture.with(db: 29, manifests: manifests) { fixture in
            try Self.splitter.write(toFile: "\(fixture.functionsDirectory)/split/split.py", atomically: true, encoding: .utf8)
            try await fixture.startPipeline()
            try await fixture.start("split")
            let spec: JSONValue = [
                "name": "order_lines",
                "fields": [["name": "order_id", "type": "string", "required": true], ["name": "line", "type": "integer", "required": true],
                           ["name": "sku", "type": "string", "required": true], ["name": "qty", "type": "integer", "required": true]],
                "key": ["order_id", "line"],
                "chain": ["split", "validate", "load"],
            ]
            let created = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/datasets"), body: Data(spec.serializedBytes),
                                                 headers: ["Content-Type": "application/json"])
            #expect(created.status == 201, "\(created.text)")
            // 300 orders: order n has n % 4 lines (none for every fourth, dropped as no_lines);
            // the second line of every seventh order has a quantity that is not a number.
            var body = Data(), lines = 0, bad = 0, empty = 0
            for n in 0..<300 {
                var items: [JSONValue] = []
                for line in 0..<(n % 4) {
                    let broken = n % 7 == 0 && line == 1
                    if broken { bad += 1 }
                    items.append(["sku": .string("sku-\(line)"), "qty": broken ? "two" : .int(Int64(line + 1))])
                }
                lines += items.count
                if items.isEmpty { empty += 1 }
                body.append(contentsOf: JSONValue.object(["order_id": .string("o-\(n)"), "lines": .array(items)]).serializedBytes + [0x0A])
            }
            let upload = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/datasets/order_lines/ingest"), body: body,
                                                headers: ["Content-Type": "application/x-ndjson"])
            let id = try #require(try JSONParser().parse(Array(upload.body))["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed", "\(job)")
            #expect(job.count("received") == 300)
            #expect(job["counts"]?["added"]?.intValue == Int64(lines - (300 - empty)), "\(job)")
            #expect(job.count("loaded") == lines - bad && job.count("quarantined") == bad, "\(job)")
            #expect(job["drops"]?["no_lines"]?.intValue == Int64(empty), "\(job)")
            #expect(job["counts"]?["in_flight"] == 0, "\(job)")
            #expect(try await fixture.quarantineReasons(job: id) == ["wrong_type": bad])
            let rows = try await fixture.clients.postgres.query(
                "SELECT count(*), count(DISTINCT order_id), sum(qty) FROM datasets.order_lines").rows
            let quantities = (0..<300).reduce(0) { sum, n in sum + (0..<(n % 4)).filter { !(n % 7 == 0 && $0 == 1) }.reduce(0) { $0 + $1 + 1 } }
            #expect(rows == [["\(lines - bad)", "\(300 - empty)", "\(quantities)"]])
        }
    }

    /// Splits each order into its line items, one event per line.
    static let splitter = """
        import hmac, json, os, socket
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        TOKEN = "Bearer " + os.environ["SLUICE_FUNCTION_TOKEN"]

        def outcome(order):
            lines = order.get("lines") or []
            if not lines:
                return {"outcome": "drop", "reason": "no_lines"}
            return {"outcome": "forward", "events": [
                {"order_id": order["order_id"], "line": n, "sku": item["sku"], "qty": item["qty"]} for n, item in enumerate(lines)]}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            def do_POST(self):
                if not hmac.compare_digest(self.headers.get("Authorization", ""), TOKEN):
                    self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers(); return
                chunk = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                data = json.dumps({"outcomes": [outcome(order) for order in chunk["events"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket = socket.socket(fileno=3)  # the socket Sluice bound for it
        server.serve_forever()
        """

    /// The pid of the latest function process a supervisor's log names.
    static func childPID(in log: String) -> Int32? {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("function process started") }),
              let range = line.range(of: #""pid":""#) else { return nil }
        return Int32(line[range.upperBound...].prefix { $0.isNumber })
    }

    /// 50,000 events through the chain with the Python function: its process is killed with
    /// `kill -9` mid-run, then the Sluice process supervising it (whose process must die with
    /// it), and every event is still accounted for exactly once, with nothing left pending.
    @Test func killingTheFunctionAndItsSupervisorLosesAndDoublesNothing() async throws {
        try await PipelineFixture.with(db: 21, manifests: try Self.manifests()) { fixture in
            try await Self.install(fixture)
            try await fixture.startPipeline()
            try await fixture.start("score")
            let workload = try await GeneratedWorkload.make(count: 50_000, seed: 222, format: "ndjson", in: fixture.directory)
            let path = workload.path
            let upload = Task { try await fixture.upload(file: path, contentType: "application/x-ndjson") }
            func waitForScore(_ threshold: Int) async throws -> Int {
                let deadline = ContinuousClock.now + .seconds(120)
                var seen = 0
                while ContinuousClock.now < deadline {
                    if let key = try await fixture.clients.redis.send(["KEYS", "{sluice}:job:*"]).array?.first?.text {
                        seen = Int(try await fixture.clients.redis.send(["HGET", RedisArgument(key), "fn.score.in"]).int ?? 0)
                        if seen >= threshold { break }
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
                return seen
            }
            // The user's process, mid-run.
            let supervisor = try #require(fixture.processes["score"])
            let first = try #require(Self.childPID(in: supervisor.log))
            let before = try await waitForScore(8_000)
            #expect(before >= 8_000 && before < 45_000, "score had seen \(before)")
            #expect(kill(first, SIGKILL) == 0)
            // Then the Sluice process supervising the restarted one: its process goes with it.
            let during = try await waitForScore(before + 10_000)
            #expect(during < workload.expected["loaded"]!, "score had seen \(during)")
            let second = try #require(Self.childPID(in: supervisor.log))
            #expect(second != first)
            supervisor.signal(SIGKILL)
            #expect(await supervisor.waitExit(timeout: .seconds(10)) == 128 + SIGKILL)
            var orphaned = true
            for _ in 0..<100 where orphaned {
                orphaned = kill(second, 0) == 0
                if orphaned { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(!orphaned, "the function's process outlived the Sluice process supervising it")
            try await fixture.start("score")

            let answer = try await upload.value
            #expect(answer.status == 202)
            let id = try #require(answer.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            let lowScore = Int(job["drops"]?["low_score"]?.intValue ?? -1)
            #expect(lowScore > 0)
            #expect(job.count("loaded") + lowScore == workload.expected["loaded"])
            for name in ["quarantined", "stale", "duplicate", "no_consent", "failed"] {
                #expect(job.count(name) == (workload.expected[name] ?? 0), "counts.\(name)")
            }
            #expect(job.count("received") == workload.count)
            let rows = Int(try await fixture.clients.postgres.query("SELECT count(*) FROM events WHERE job_id = \(id)::uuid").scalar ?? "") ?? -1
            #expect(rows == job.count("loaded"))
            for function in ["validate", "enrich", "transform", "score", "load"] {
                #expect(try await fixture.backlog(function) == 0, "\(function) has chunks pending")
            }
        }
    }

    /// The tests' Python function. Its behaviour is set in the file `MOODY_MODE_FILE` names (no
    /// file: `ok`): `ok` forwards each event with `moody: true`, `fail` answers 500, `reject`
    /// 422, `hang` never answers, `crash` ends the process (after setting `ok`). With
    /// `RECORD_FILE` it writes each chunk's events there, and the descriptors it started with
    /// to `RECORD_FILE.fds`. It listens on the socket Sluice passes (descriptor 3), unless
    /// `MOODY_BINDS_PORT` is set: then it binds PORT itself, as functions written before did.
    static let moody = """
        import json, os, socket, sys, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        MODE, RECORD = os.environ.get("MOODY_MODE_FILE"), os.environ.get("RECORD_FILE")
        if RECORD:
            fds = sorted(os.listdir("/proc/self/fd"), key=int)  # the listing opens one more
            with open(RECORD + ".fds", "w") as out: out.write(json.dumps(fds))
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave as they are written: with Nagle, each answer waits for a delayed ACK (40 ms).
            disable_nagle_algorithm = True
            def do_POST(self):
                if self.headers.get("Authorization") != "Bearer " + os.environ["SLUICE_FUNCTION_TOKEN"]:
                    return self.answer(401, {})
                chunk = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if RECORD:
                    with open(RECORD, "a") as out: out.write(json.dumps(chunk["events"]) + "\\n")
                mode = open(MODE).read().strip() if MODE else "ok"
                if mode == "fail": return self.answer(500, {"detail": "model unavailable"})
                if mode == "reject": return self.answer(422, {"detail": "not my kind of rows"})
                if mode == "hang": time.sleep(60)
                if mode == "crash":
                    # Replaced, not written over: the test owns the file, and this process may run as another user.
                    open(MODE + ".new", "w").write("ok")
                    os.replace(MODE + ".new", MODE)
                    os._exit(3)
                self.answer(200, {"outcomes": [{"outcome": "forward", "event": dict(e, moody=True)} for e in chunk["events"]]})
            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def log_message(self, *args): pass
        if os.environ.get("LISTEN_FDS") == "1" and not os.environ.get("MOODY_BINDS_PORT"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
            server.socket = socket.socket(fileno=3)
        else:
            server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
        server.serve_forever()
        """

    /// A function that answers 500 is retried with backoff and then dead-lettered; one that
    /// answers 422 is dead-lettered at once; one that hangs is cut at its timeout and retried;
    /// one that crashes is restarted and its chunk retried; `sluice dlq redrive` brings the dead
    /// letters back once the function is fixed, and every row loads exactly once.
    @Test func failuresAreRetriedDeadLetteredAndRedriven() async throws {
        let mode = try makeSharedDirectory("moody") + "/mode"
        try "ok".write(toFile: mode, atomically: true, encoding: .utf8)
        var manifests = try PipelineFixture.pipelineManifests()
        manifests["moody"] = """
            runtime: {command: [python3, moody.py], timeout: 1s}
            triggers: [{stream: moody}]
            visibility_timeout: 3s
            retry: {max_attempts: 3, initial_backoff: 100ms, max_backoff: 200ms}
            environment: {MOODY_MODE_FILE: \(mode)}
            """
        try await PipelineFixture.with(db: 22, manifests: manifests) { fixture in
            try Self.moody.write(toFile: "\(fixture.functionsDirectory)/moody/moody.py", atomically: true, encoding: .utf8)
            try await fixture.startPipeline()
            let moody = try await fixture.start("moody")
            let spec: JSONValue = [
                "name": "moods",
                "fields": [["name": "id", "type": "string", "required": true], ["name": "moody", "type": "boolean"]],
                "key": ["id"],
                "chain": ["validate", "moody", "load"],
            ]
            let created = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/datasets"), body: Data(spec.serializedBytes),
                                                 headers: ["Content-Type": "application/json"])
            #expect(created.status == 201, "\(created.text)")
            func upload(_ first: Int) async throws -> String {
                var body = Data()
                for n in first..<(first + 10) { body.append(contentsOf: Array("{\"id\": \"m-\(n)\"}\n".utf8)) }
                let response = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/datasets/moods/ingest"), body: body,
                                                      headers: ["Content-Type": "application/x-ndjson"])
                guard response.status == 202, let id = try JSONParser().parse(Array(response.body))["job_id"]?.stringValue else {
                    throw TestSetupError("upload answered \(response.status): \(response.text)")
                }
                return id
            }
            let dlq = RedisArgument(fixture.keys.deadLetters("moody"))
            func deadLetters(_ count: Int) async throws -> [StreamEntry] {
                let deadline = ContinuousClock.now + .seconds(30)
                var entries: [StreamEntry] = []
                while ContinuousClock.now < deadline {
                    entries = try await fixture.clients.redis.range(stream: fixture.keys.deadLetters("moody"))
                    if entries.count >= count { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                return entries
            }

            // 500: retried with backoff, then dead-lettered after its three attempts.
            try "fail".write(toFile: mode, atomically: true, encoding: .utf8)
            let failed = try await upload(0)
            var letters = try await deadLetters(1)
            #expect(letters.count == 1)
            #expect(letters.last?.field("error_code") == "function_failed")
            #expect(letters.last?.field("attempts") == "3")
            #expect(letters.last?.field("error") == "the function answered 500")

            // 422: dead-lettered at once, after one attempt.
            try "reject".write(toFile: mode, atomically: true, encoding: .utf8)
            let rejected = try await upload(10)
            letters = try await deadLetters(2)
            #expect(letters.count == 2)
            #expect(letters.last?.field("error_code") == "function_rejected")
            #expect(letters.last?.field("attempts") == "1")

            // A hang: cut at the 1 s timeout, retried, dead-lettered after three.
            try "hang".write(toFile: mode, atomically: true, encoding: .utf8)
            let hung = try await upload(20)
            letters = try await deadLetters(3)
            #expect(letters.count == 3)
            #expect(letters.last?.field("error_code") == "function_timeout")
            #expect(letters.last?.field("attempts") == "3")
            for job in [failed, rejected, hung] {
                #expect(try await fixture.waitForJob(job)["status"]?.stringValue == "failed")
            }

            // A crash: the process is started again and the chunk retried; it loads.
            try "crash".write(toFile: mode, atomically: true, encoding: .utf8)
            let crashed = try await upload(30)
            let crashedJob = try await fixture.waitForJob(crashed)
            #expect(crashedJob["status"]?.stringValue == "completed")
            #expect(crashedJob.count("loaded") == 10)
            #expect(moody.log.components(separatedBy: "function process started").count - 1 == 2)
            #expect(moody.log.contains("function process exited; restarting"))

            // Fixed: the dead letters are redriven and load, each row once.
            #expect(try String(contentsOfFile: mode, encoding: .utf8) == "ok")
            let redrive = try await runCommand(fixture.environment.binary, ["dlq", "redrive", "moody"], environment: fixture.processEnvironment)
            #expect(redrive.output == "redrove 3 chunks to moody\n", "\(redrive.error)")
            #expect(try await fixture.clients.redis.send(["XLEN", dlq]).int == 0)
            let deadline = ContinuousClock.now + .seconds(30)
            var rows = -1
            while ContinuousClock.now < deadline {
                rows = Int(try await fixture.clients.postgres.query("SELECT count(*) FROM datasets.moods WHERE moody").scalar ?? "") ?? -1
                if rows == 40 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(rows == 40)
            #expect(try await fixture.counter("loaded", jobs: [failed, rejected, hung]) == 30)

            // SIGTERM: the process gets it once the trigger has drained, and ends by it (it does
            // not inherit the SIGTERM Sluice ignores), well before the 10 s SIGKILL.
            let child = try #require(Self.childPID(in: moody.log))
            let stopping = ContinuousClock.now
            moody.signal(SIGTERM)
            #expect(await moody.waitExit(timeout: .seconds(9)) == 0)
            #expect(ContinuousClock.now - stopping < .seconds(9))
            #expect(!moody.log.contains("ignored SIGTERM"))
            #expect(kill(child, 0) != 0, "the function's process outlived its supervisor")
        }
    }

    /// The same Python function first in two datasets' chains, once behind `pii-mask` and once
    /// without: behind it the process receives none of the e-mail addresses and phone numbers in
    /// the records; without it (the control) it receives every one. A chain that starts without
    /// masking is refused through the API and declared in a file (`unmasked: true`) instead. The control binds PORT
    /// itself, as a function written before Sluice passed the socket: it still works, started
    /// again with PORT alone after its first start found the port taken.
    @Test func piiMaskOnTheFunctionKeepsPersonalDataFromItsProcess() async throws {
        let records = try makeSharedDirectory("recorder")
        var manifests = try PipelineFixture.pipelineManifests()
        for (name, middleware, old) in [("inbox", "[pii-mask]", ""), ("rawbox", "[]", ", MOODY_BINDS_PORT: yes")] {
            manifests[name] = """
                runtime: {command: [python3, moody.py], timeout: 3s}
                triggers: [{stream: \(name)}]
                middleware: \(middleware)
                visibility_timeout: 5s
                environment: {RECORD_FILE: \(records)/\(name).ndjson\(old)}
                """
        }
        try await PipelineFixture.with(db: 23, manifests: manifests) { fixture in
            for name in ["inbox", "rawbox"] {
                try Self.moody.write(toFile: "\(fixture.functionsDirectory)/\(name)/moody.py", atomically: true, encoding: .utf8)
            }
            // The control's dataset: only a file may let a chain start without masking.
            try """
                name: tickets_raw
                fields:
                  - {name: id, type: string, required: true}
                  - {name: email, type: string}
                  - {name: note, type: string}
                key: [id]
                chain: [rawbox, validate, load]
                unmasked: true
                """.write(toFile: "\(fixture.directory)/datasets/tickets_raw.yaml", atomically: true, encoding: .utf8)
            try await fixture.startPipeline()
            let inbox = try await fixture.start("inbox")
            let rawbox = try await fixture.start("rawbox")
            let emails = (0..<20).map { "customer.\($0)@example.org" }
            let phones = (0..<20).map { "+44 20 7946 \(String(1000 + $0))" }
            var body = Data()
            for n in 0..<20 {
                let record: JSONValue = ["id": .string("t-\(n)"), "email": .string(emails[n]), "note": .string("call me on \(phones[n]) please")]
                body.append(contentsOf: record.serializedBytes + [UInt8(ascii: "\n")])
            }
            for (dataset, function) in [("tickets", "inbox"), ("tickets_raw", "rawbox")] {
                let spec: JSONValue = [
                    "name": .string(dataset),
                    "fields": [["name": "id", "type": "string", "required": true], ["name": "email", "type": "string"], ["name": "note", "type": "string"]],
                    "key": ["id"],
                    "chain": [.string(function), "validate", "load"],
                ]
                let created = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/datasets"), body: Data(spec.serializedBytes),
                                                     headers: ["Content-Type": "application/json"])
                if function == "rawbox" {
                    // Through the API a chain must start by masking; the file above declared it.
                    #expect(created.status == 422, "\(created.text)")
                    #expect(try JSONParser().parse(Array(created.body))["key"] == "chain[0]", "\(created.text)")
                } else {
                    #expect(created.status == 201, "\(created.text)")
                }
                let upload = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/datasets/\(dataset)/ingest"), body: body,
                                                    headers: ["Content-Type": "application/x-ndjson"])
                let id = try #require(try JSONParser().parse(Array(upload.body))["job_id"]?.stringValue)
                let job = try await fixture.waitForJob(id)
                #expect(job["status"]?.stringValue == "completed")
                #expect(job.count("loaded") == 20)
            }
            let masked = try String(contentsOfFile: "\(records)/inbox.ndjson", encoding: .utf8)
            let raw = try String(contentsOfFile: "\(records)/rawbox.ndjson", encoding: .utf8)
            #expect(masked.contains("t-19") && raw.contains("t-19"))
            // Started with standard input, output and error and its listening socket (3) only: none of
            // Sluice's sockets. The old-style control, started again without the socket, has none.
            #expect(try String(contentsOfFile: "\(records)/inbox.ndjson.fds", encoding: .utf8) == #"["0", "1", "2", "3", "4"]"#)
            #expect(try String(contentsOfFile: "\(records)/rawbox.ndjson.fds", encoding: .utf8) == #"["0", "1", "2", "3"]"#)
            #expect(!inbox.log.contains("ended before it answered on the socket"))
            #expect(rawbox.log.contains("ended before it answered on the socket"), "\(rawbox.tail())")
            for value in emails + phones {
                #expect(!masked.contains(value), "behind pii-mask the process received \(value)")
                #expect(raw.contains(value), "the control did not receive \(value)")
            }
        }
    }
}

