import Foundation
import Sluice
import Testing

/// `sluice new` and the local loop, as a developer uses them: a Python, a Node and a Swift
/// function written by `sluice new`, their generated tests run, all three put in the events'
/// chain under one `sluice dev`; a workload loads with their drops counted; then their handlers
/// are edited and each edit takes effect within a second, without restarting `sluice dev`.
@Suite(.serialized) struct FunctionTemplatesEndToEndTests {
    @Test func newFunctionsPassTheirTestsRunUnderDevAndReloadWithinASecond() async throws {
        let fixture = try await PipelineFixture(db: 26, manifests: try PipelineFixture.pipelineManifests())
        let environment = fixture.processEnvironment
        for (name, language) in [("hello", "python"), ("greet", "node"), ("sw", "swift")] {
            let made = try await runCommand(fixture.environment.binary, ["new", name, "--lang", language], environment: environment)
            #expect(made.status == 0, "\(made.error)")
        }
        let hello = "\(fixture.functionsDirectory)/hello", greet = "\(fixture.functionsDirectory)/greet", sw = "\(fixture.functionsDirectory)/sw"
        for file in ["function.yaml", "handler.py", "test_handler.py", "README.md"] {
            #expect(FileManager.default.fileExists(atPath: "\(hello)/\(file)"), "hello/\(file)")
        }
        for file in ["function.yaml", "handler.js", "handler.test.js", "README.md"] {
            #expect(FileManager.default.fileExists(atPath: "\(greet)/\(file)"), "greet/\(file)")
        }
        for file in ["function.yaml", "handler.swift", "SluiceProtocol.swift", "main.swift", "tests/main.swift", "build.sh", "README.md"] {
            #expect(FileManager.default.fileExists(atPath: "\(sw)/\(file)"), "sw/\(file)")
        }
        // The generated tests pass as generated.
        let pythonTest = try await runCommand("/bin/sh", ["-c", "cd \(hello) && python3 -m unittest 2>&1"])
        #expect(pythonTest.status == 0 && pythonTest.output.contains("Ran 3 tests"), "\(pythonTest.output)")
        let nodeTest = try await runCommand("/bin/sh", ["-c", "cd \(greet) && node --test 2>&1"])
        #expect(nodeTest.status == 0 && nodeTest.output.contains("# pass 2"), "\(nodeTest.output)")
        let swiftTest = try await runCommand("/bin/sh", ["-c", "cd \(sw) && sh build.sh test 2>&1"], timeout: .seconds(300))
        #expect(swiftTest.status == 0 && swiftTest.output.contains("8 checks passed"), "\(swiftTest.output)")
        // sw drops sign-ups (hello drops sign-outs, and greet would too).
        let swManifest = "\(sw)/function.yaml"
        try String(contentsOfFile: swManifest, encoding: .utf8).replacingOccurrences(of: "drop_types: [logout]", with: "drop_types: [signup]")
            .write(toFile: swManifest, atomically: true, encoding: .utf8)
        // A name that is not one, and one that exists, are refused.
        #expect(try await runCommand(fixture.environment.binary, ["new", "Hello", "--lang", "python"], environment: environment).status != 0)
        #expect(try await runCommand(fixture.environment.binary, ["new", "hello", "--lang", "node"], environment: environment).status != 0)

        // In the chain, as the README says, then `sluice dev`.
        let datasets = "\(fixture.directory)/datasets/events.yaml"
        let spec = try String(contentsOfFile: datasets, encoding: .utf8)
        try spec.replacingOccurrences(of: "chain: [validate, enrich, transform, load]", with: "chain: [validate, enrich, transform, hello, sw, greet, load]")
            .write(toFile: datasets, atomically: true, encoding: .utf8)
        let migrate = try await runCommand(fixture.environment.binary, ["migrate"], environment: environment)
        #expect(migrate.status == 0, "\(migrate.error)")
        let port = freePort()
        let dev = try SluiceProcess(binary: fixture.environment.binary, arguments: ["dev", "--port", "\(port)"],
                                    environment: environment.merging(["SLUICE_JWT_SECRET": GatewayEndToEndTests.secret]) { $1 },
                                    name: "dev", port: port, logDirectory: fixture.directory)
        fixture.processes["dev"] = dev
        fixture.ports["dev"] = port
        let result: Result<Void, any Error>
        do {
            result = .success(try await {
                try await dev.waitReady()
                let ready = try await HTTP.request("GET", fixture.url("dev", "/health/ready"))
                let checks = try JSONParser().parse(Array(ready.body))["checks"]
                #expect(checks?["function hello"] == true && checks?["function greet"] == true && checks?["function sw"] == true, "\(ready.text)")
                let token = try Self.token

                func run(seed: Int) async throws -> (JSONValue, GeneratedWorkload) { try await Self.upload(fixture, seed: seed, token: token) }

                // As generated: hello drops sign-outs, and sw sign-ups, as unwanted_type.
                let (first, firstWorkload) = try await run(seed: 261)
                let unwanted = Int(first["drops"]?["unwanted_type"]?.intValue ?? -1)
                #expect(unwanted > 0, "\(first)")
                #expect(first.count("loaded") + unwanted == firstWorkload.expected["loaded"], "\(first)")
                #expect(first.count("quarantined") == firstWorkload.expected["quarantined"])

                // Edit both handlers: hello drops nothing, greet names its drops anew. Each process
                // is restarted within a second of its edit, and sluice dev keeps running.
                let helloRestarts = dev.log.components(separatedBy: "files changed; process restarted").count
                let edited = ContinuousClock.now
                try String(contentsOfFile: "\(hello)/handler.py", encoding: .utf8)
                    .replacingOccurrences(of: #"config.get("drop_types", [])"#, with: "[]")
                    .write(toFile: "\(hello)/handler.py", atomically: true, encoding: .utf8)
                try String(contentsOfFile: "\(greet)/handler.js", encoding: .utf8)
                    .replacingOccurrences(of: "reason: 'unwanted_type'", with: "reason: 'edited_in_node'")
                    .write(toFile: "\(greet)/handler.js", atomically: true, encoding: .utf8)
                var reloaded: Duration?
                while ContinuousClock.now - edited < .seconds(5) {
                    let log = dev.log
                    let restarted = log.components(separatedBy: "files changed; process restarted").count - helloRestarts
                    if restarted >= 2, Self.readyAfterReload(log, function: "hello"), Self.readyAfterReload(log, function: "greet") {
                        reloaded = ContinuousClock.now - edited
                        break
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                let took = try #require(reloaded, "the edited functions were not restarted: \(dev.tail())")
                #expect(took < .seconds(1), "the edits took \(took) to take effect")
                #expect(dev.isRunning)

                // Swift: an edit is built (the old process serving meanwhile) and the new build
                // started. A build that fails is logged with the compiler's error and the old
                // process kept; then three edits, each timed to the new process's readiness.
                let handler = "\(sw)/handler.swift"
                let source = try String(contentsOfFile: handler, encoding: .utf8)
                let failedBefore = dev.log.components(separatedBy: "function build failed").count
                let restartsBefore = Self.restarts(dev.log, function: "sw")
                try (source + "\nlet broken: Int = \"not a number\"\n").write(toFile: handler, atomically: true, encoding: .utf8)
                let failed = ContinuousClock.now
                while dev.log.components(separatedBy: "function build failed").count == failedBefore, ContinuousClock.now - failed < .seconds(20) {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let failure = jsonLogLines(dev.log).last { $0["msg"] == "function build failed" && $0["function"] == "sw" }
                #expect(failure?["output"]?.contains("handler.swift") == true && failure?["output"]?.contains("error") == true, "\(dev.tail())")
                try await Task.sleep(for: .milliseconds(300))
                #expect(Self.restarts(dev.log, function: "sw") == restartsBefore, "a failed build restarted the process: \(dev.tail())")
                var timings: [Duration] = []
                let edits = [source.replacingOccurrences(of: #"reason: "unwanted_type""#, with: #"reason: "edited_in_swift""#)]
                for edit in edits + [edits[0] + "// edited once more\n", edits[0] + "// and again\n"] {
                    let before = Self.restarts(dev.log, function: "sw")
                    try edit.write(toFile: handler, atomically: true, encoding: .utf8)
                    let edited = ContinuousClock.now
                    var took: Duration?
                    while ContinuousClock.now - edited < .seconds(20) {
                        let log = dev.log
                        if Self.restarts(log, function: "sw") > before, Self.readyAfterReload(log, function: "sw") {
                            took = ContinuousClock.now - edited
                            break
                        }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    timings.append(try #require(took, "the Swift edit was not built and restarted: \(dev.tail())"))
                }
                let builds = jsonLogLines(dev.log).filter { $0["msg"] == "function built" && $0["function"] == "sw" }.compactMap { $0["build_ms"] }
                print("sluice dev: Swift edits live after \(timings.map { "\($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) ms" }) (builds: \(builds) ms)")
                // The middle of three: one edit may meet a busy machine.
                #expect(timings.sorted()[1] < .seconds(1), "the Swift edits took \(timings) to take effect (builds: \(builds) ms)")
                #expect(dev.isRunning)

                let (second, secondWorkload) = try await run(seed: 262)
                let renamed = Int(second["drops"]?["edited_in_node"]?.intValue ?? -1)
                let renamedSwift = Int(second["drops"]?["edited_in_swift"]?.intValue ?? -1)
                #expect(renamed > 0 && renamedSwift > 0 && second["drops"]?["unwanted_type"] == nil, "\(second)")
                #expect(second.count("loaded") + renamed + renamedSwift == secondWorkload.expected["loaded"], "\(second)")
            }())
        } catch {
            result = .failure(error)
        }
        await fixture.stopAll()
        try result.get()
    }

    /// `sluice invoke` builds a Swift function first and prints its outcomes; one that does not
    /// compile fails at once (not at its 10 s timeout) with `function_build_failed`, the
    /// compiler's error in the log.
    @Test func invokeBuildsASwiftFunctionAndReportsABuildThatFails() async throws {
        let environment = try TestEnvironment.get()
        let functions = try makeTemporaryDirectory("swift-invoke") + "/functions"
        let made = try await runCommand(environment.binary, ["new", "sw", "--lang", "swift", "--directory", "\(functions)/sw"])
        #expect(made.status == 0, "\(made.error)")
        let manifest = "\(functions)/sw/function.yaml"
        try String(contentsOfFile: manifest, encoding: .utf8).replacingOccurrences(of: "middleware: [pii-mask]\n", with: "")
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let events = Data(#"[{"event_type": "logout"}, {"event_type": "purchase", "x": 1.5}, 7]"#.utf8)
        let variables = ["SLUICE_FUNCTIONS_DIR": functions, "SLUICE_LOG_LEVEL": "info"]
        let invoked = try await runCommand(environment.binary, ["invoke", "sw"], environment: variables, input: events, timeout: .seconds(300))
        #expect(invoked.status == 0, "\(invoked.error)")
        let outcomes = try JSONParser().parse(Array(invoked.output.utf8))["outcomes"]
        #expect(outcomes?[0] == ["outcome": "drop", "reason": "unwanted_type"], "\(invoked.output)")
        #expect(outcomes?[1]?["outcome"] == "forward" && outcomes?[1]?["event"] == ["event_type": "purchase", "x": 1.5], "\(invoked.output)")
        #expect(outcomes?[2]?["outcome"] == "quarantine" && outcomes?[2]?["reason"] == "wrong_type" && outcomes?[2]?["event"] == 7, "\(invoked.output)")

        let handler = "\(functions)/sw/handler.swift"
        try (try String(contentsOfFile: handler, encoding: .utf8) + "let broken: Int = \"not a number\"\n").write(toFile: handler, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        let broken = try await runCommand(environment.binary, ["invoke", "sw"], environment: variables, input: events, timeout: .seconds(300))
        let took = ContinuousClock.now - started
        #expect(broken.status != 0)
        let line = broken.error.split(separator: "\n").first { $0.hasPrefix("Error: sw failed") } ?? ""
        #expect(line == "Error: sw failed: retryable function_build_failed: the function's build failed (the log has its errors)", "\(broken.error)")
        let failure = jsonLogLines(broken.error).first { $0["msg"] == "function build failed" }
        #expect(failure?["output"]?.contains("handler.swift") == true && failure?["output"]?.contains("error: cannot convert") == true, "\(broken.error)")
        #expect(took < .seconds(8), "a build that fails took \(took) to be reported")
    }

    /// The generated handlers stop at once on SIGTERM (a reload, or a drained shutdown), whatever
    /// connections Sluice holds to them: one idle after an answer, one opened and never used (as
    /// an HTTP client's pool keeps), one with half a request's headers. Node's own `close()`
    /// waits for the last two, which held a reload for ten seconds until SIGKILL.
    @Test func generatedHandlersStopAtOnceOnSIGTERMWhateverConnectionsAreOpen() async throws {
        let environment = try TestEnvironment.get()
        let directory = try makeTemporaryDirectory("sigterm")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (name, language) in [("py", "python"), ("js", "node")] {
            let made = try await runCommand(environment.binary, ["new", name, "--lang", language, "--directory", "\(directory)/\(name)"])
            #expect(made.status == 0, "\(made.error)")
        }
        let script = #"""
            import json, os, signal, socket, subprocess, sys, time, http.client
            directory, command = sys.argv[1], sys.argv[2:]
            for connections in ["idle", "unused", "half"]:
                s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
                token = "t" * 32
                env = dict(os.environ, PORT=str(port), SLUICE_FUNCTION_TOKEN=token)
                process = subprocess.Popen(command, cwd=directory, env=env)
                for _ in range(250):
                    try:
                        socket.create_connection(("127.0.0.1", port)).close()
                        break
                    except OSError:
                        time.sleep(0.02)
                held = []
                answered = http.client.HTTPConnection("127.0.0.1", port)
                answered.request("POST", "/", json.dumps({"events": [{"event_type": "login"}], "config": {}}),
                                 {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
                status = answered.getresponse()
                status.read()
                held.append(answered)
                if connections == "unused":
                    held.append(socket.create_connection(("127.0.0.1", port)))
                if connections == "half":
                    half = socket.create_connection(("127.0.0.1", port))
                    half.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    held.append(half)
                time.sleep(0.2)
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                try:
                    code = process.wait(5)
                    print(f"{connections} {status.status} exit {code} after {time.monotonic() - started:.3f}")
                except subprocess.TimeoutExpired:
                    process.kill()
                    print(f"{connections} {status.status} still running after 5 s")
            """#
        let path = "\(directory)/stop.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        for (name, command) in [("py", ["python3", "handler.py"]), ("js", ["node", "handler.js"])] {
            let run = try await runCommand("/usr/bin/env", ["python3", path, "\(directory)/\(name)"] + command, timeout: .seconds(60))
            let lines = run.output.split(separator: "\n").map(String.init)
            #expect(run.status == 0 && lines.count == 3, "\(name): \(run.output) \(run.error)")
            for line in lines {
                let fields = line.split(separator: " ")
                #expect(fields.count == 6 && fields[1] == "200" && fields[2] == "exit" && fields[3] == "0", "\(name): \(line)")
                #expect((Double(fields.last ?? "") ?? 99) < 1, "\(name) took too long to stop: \(line)")
            }
        }
    }

    /// A 1,000-event workload uploaded through `sluice dev`, and its job once completed.
    static func upload(_ fixture: PipelineFixture, seed: Int, token: String) async throws -> (JSONValue, GeneratedWorkload) {
        let workload = try await GeneratedWorkload.make(count: 1_000, seed: seed, format: "ndjson", in: fixture.directory)
        let upload = try await HTTP.request("POST", fixture.url("dev", "/api/v1/ingest"), body: try Data(contentsOf: URL(fileURLWithPath: workload.path)),
                                            headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/x-ndjson"])
        #expect(upload.status == 202, "\(upload.text)")
        let job = try #require(try JSONParser().parse(Array(upload.body))["job_id"]?.stringValue)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let answer = try JSONParser().parse(Array(try await GatewayEndToEndTests.get(fixture, "/api/v1/jobs/\(job)", via: "dev", token: token).body))
            if answer["status"]?.stringValue == "completed" { return (answer, workload) }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestSetupError("job \(job) did not complete")
    }

    static var token: String {
        get throws { try GatewayEndToEndTests.hs256(GatewayEndToEndTests.claims(subject: "dev-user", roles: ["ingest", "analyst"], dropping: ["iss", "aud"])) }
    }

    /// `sluice new --lang swift --package`: a package that depends on this Sluice by path. Its generated
    /// test passes; its own binary's `dev` runs the shipped pipeline with the function in the
    /// chain. (Built in examples/swift-risk's build folder, where make test has compiled Sluice
    /// once already: the package itself is a few seconds.)
    @Test func aSwiftFunctionFromSluiceNewPassesItsTestAndRunsUnderItsDev() async throws {
        let root = try TestEnvironment.get().packageRoot
        let scratch = "\(root)/examples/swift-risk/.build"
        let fixture = try await PipelineFixture(db: 27, manifests: try PipelineFixture.pipelineManifests())
        let package = "\(fixture.directory)/checker"
        let made = try await runCommand(fixture.environment.binary, ["new", "checker", "--lang", "swift", "--package", "--directory", package],
                                        environment: fixture.processEnvironment)
        #expect(made.status == 0, "\(made.error)")
        let inherited = ProcessInfo.processInfo.environment
        let built = try await runCommand("/bin/sh", ["-c", "swift build --package-path \(package) --scratch-path \(scratch) --build-tests 2>&1 | tail -20"],
                                         environment: inherited, timeout: .seconds(900))
        #expect(built.status == 0 && built.output.contains("Build complete"), "\(built.output)")
        let tested = try await runCommand("/bin/sh", ["-c", "swift test --package-path \(package) --scratch-path \(scratch) --skip-build 2>&1"],
                                          environment: inherited, timeout: .seconds(300))
        #expect(tested.status == 0 && tested.output.contains("2 tests in 1 suite passed"), "\(tested.output)")
        let binary = "\(scratch)/debug/checker-sluice"
        try FileManager.default.copyItem(atPath: "\(package)/functions/checker", toPath: "\(fixture.functionsDirectory)/checker")
        let datasets = "\(fixture.directory)/datasets/events.yaml"
        try String(contentsOfFile: datasets, encoding: .utf8)
            .replacingOccurrences(of: "chain: [validate, enrich, transform, load]", with: "chain: [validate, enrich, transform, checker, load]")
            .write(toFile: datasets, atomically: true, encoding: .utf8)
        let migrate = try await runCommand(binary, ["migrate"], environment: fixture.processEnvironment)
        #expect(migrate.status == 0, "\(migrate.error)")
        let port = freePort()
        let rebuild = "swift build --package-path \(package) --scratch-path \(scratch) --product checker-sluice"
        let dev = try SluiceProcess(binary: binary, arguments: ["dev", "--port", "\(port)", "--rebuild", rebuild, "--watch", "\(package)/Sources"],
                                    environment: fixture.processEnvironment.merging(["SLUICE_JWT_SECRET": GatewayEndToEndTests.secret]) { $1 },
                                    name: "dev", port: port, logDirectory: fixture.directory)
        fixture.processes["dev"] = dev
        fixture.ports["dev"] = port
        let result: Result<Void, any Error>
        do {
            result = .success(try await {
                try await dev.waitReady()
                let (job, workload) = try await Self.upload(fixture, seed: 271, token: try Self.token)
                let unwanted = Int(job["drops"]?["unwanted_type"]?.intValue ?? -1)
                #expect(unwanted > 0, "\(job)")
                #expect(job.count("loaded") + unwanted == workload.expected["loaded"], "\(job)")
                #expect(job.count("quarantined") == workload.expected["quarantined"])

                // Edit the handler: dev rebuilds and starts itself again on the new build (a
                // rebuild, not a reload within a second: Swift compiles and links).
                let source = "\(package)/Sources/Checker/Checker.swift"
                try String(contentsOfFile: source, encoding: .utf8).replacingOccurrences(of: "unwanted_type", with: "unwanted_swift")
                    .write(toFile: source, atomically: true, encoding: .utf8)
                let edited = ContinuousClock.now
                while !dev.log.contains("starting the new build"), ContinuousClock.now - edited < .seconds(600) {
                    try await Task.sleep(for: .milliseconds(200))
                }
                #expect(dev.log.contains("rebuilt; restarting on the new build"), "\(dev.tail())")
                try await dev.waitReady()
                #expect(dev.isRunning)
                let (again, second) = try await Self.upload(fixture, seed: 272, token: try Self.token)
                let renamed = Int(again["drops"]?["unwanted_swift"]?.intValue ?? -1)
                #expect(renamed > 0 && again["drops"]?["unwanted_type"] == nil, "\(again)")
                #expect(again.count("loaded") + renamed == second.expected["loaded"], "\(again)")
            }())
        } catch {
            result = .failure(error)
        }
        await fixture.stopAll()
        try result.get()
    }

    /// Whether `function`'s process was ready again after its last reload.
    /// How many times `function`'s process was restarted after a change.
    static func restarts(_ log: String, function: String) -> Int {
        jsonLogLines(log).filter { $0["function"] == function && $0["msg"] == "function files changed; process restarted" }.count
    }

    static func readyAfterReload(_ log: String, function: String) -> Bool {
        let lines = jsonLogLines(log).filter { $0["function"] == function }
        guard let reload = lines.lastIndex(where: { $0["msg"] == "function files changed; process restarted" }) else { return false }
        return lines[reload...].contains { $0["msg"] == "function process ready" }
    }
}
