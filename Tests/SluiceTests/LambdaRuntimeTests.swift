import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import Sluice
@testable import SluiceFunctions

/// A Lambda handler's view of a chunk (an SQS batch) and how its result becomes outcomes; the
/// Runtime API answering only the process it supervises.
@Suite struct LambdaRuntimeTests {
    let chunk = Chunk(id: "1700000000000-0", jobID: "job-1", traceID: "trace-1",
                      events: [Event(["id": "a"]), Event(["id": "b"]), Event(["id": "c"])],
                      dataset: DatasetReference(name: "orders", version: 2))

    func outcomes(_ value: JSONValue) throws(FunctionError) -> [Outcome] {
        try LambdaProtocol.outcomes(value.serializedBytes, for: chunk)
    }

    @Test func theEventIsAnSQSBatchOfTheChunksEvents() throws {
        let body = LambdaProtocol.event(chunk, function: "review", stream: "review", attempt: 2, deadlineMilliseconds: 1_700_000_010_000,
                                        sentMilliseconds: 1_700_000_000_000, config: ["limit": 3])
        let event = try JSONParser().parse(body)
        let records = try #require(event["Records"]?.arrayValue)
        #expect(records.count == 3)
        #expect(records.map { $0["messageId"] } == ["1700000000000-0/0", "1700000000000-0/1", "1700000000000-0/2"])
        #expect(records[1]["body"] == .string(#"{"id":"b"}"#))
        #expect(records[0]["attributes"]?["ApproximateReceiveCount"] == "2")
        #expect(records[0]["eventSourceARN"] == "arn:sluice:stream:local:0:review")
        #expect(event["sluice"]?["chunk_id"] == "1700000000000-0")
        #expect(event["sluice"]?["job_id"] == "job-1")
        #expect(event["sluice"]?["dataset"] == "orders")
        #expect(event["sluice"]?["config"] == ["limit": 3])
    }

    @Test func batchItemFailuresAreQuarantinedAndTheRestGoesOn() throws {
        let result = try outcomes(["batchItemFailures": [["itemIdentifier": "1700000000000-0/1"]]])
        #expect(result == [.forward(chunk.events[0]), .quarantine(reason: "function_item_failed", event: chunk.events[1]), .forward(chunk.events[2])])
        // No failures, null, {} or a plain value: every event goes on as it came.
        for value: JSONValue in [["batchItemFailures": []], ["batchItemFailures": nil], nil, [:], "done", 42] {
            #expect(try outcomes(value) == chunk.events.map { .forward($0) }, "\(value)")
        }
    }

    @Test func anIdentifierNotInTheChunkIsABadAnswer() {
        for value: JSONValue in [["batchItemFailures": [["itemIdentifier": "other/1"]]], ["batchItemFailures": [["id": "x"]]],
                                 ["batchItemFailures": "1700000000000-0/1"]] {
            #expect(throws: FunctionError.self) { try outcomes(value) }
            do { _ = try outcomes(value) } catch { #expect(error.code == "bad_outcomes" && error.kind == .permanent) }
        }
    }

    @Test func theFunctionProtocolsOwnAnswerIsReadAsSuch() throws {
        let changed = try outcomes(["outcomes": [["outcome": "drop", "reason": "x"], ["outcome": "forward"], ["outcome": "forward", "event": ["id": "B"]]]])
        #expect(changed == [.drop(reason: "x"), .forward(chunk.events[1]), .forward(Event(["id": "B"]))])
        do { _ = try outcomes(["dead_letter": ["code": "schema_mismatch"]]); Issue.record("no error") } catch {
            #expect(error.code == "schema_mismatch" && error.kind == .permanent)
        }
    }

    @Test func anInvocationIsCutAtItsDeadlineAndALateAnswerIsRefused() async {
        let broker = LambdaBroker()
        let invocation = LambdaBroker.Invocation(id: "i-1", body: [], deadlineMilliseconds: 0, traceID: nil)
        let result = await broker.invoke(invocation, timeout: .milliseconds(50))
        #expect(result == .timeout)
        #expect(!broker.finish("i-1", with: .response([])))
        // A poll takes a queued invocation, and its answer completes it.
        async let answered = broker.invoke(LambdaBroker.Invocation(id: "i-2", body: [1], deadlineMilliseconds: 0, traceID: nil), timeout: .seconds(5))
        let taken = await broker.next()
        #expect(taken?.id == "i-2")
        #expect(broker.finish("i-2", with: .response([7])))
        #expect(await answered == .response([7]))
        // The process ends while it holds one: unavailable, at once.
        async let held = broker.invoke(LambdaBroker.Invocation(id: "i-3", body: [], deadlineMilliseconds: 0, traceID: nil), timeout: .seconds(5))
        _ = await broker.next()
        broker.processEnded()
        #expect(await held == .unavailable)
    }

    /// The Runtime API hands an invocation to its process and refuses every other caller (this
    /// test process among them) with 403: no other local program can take a chunk.
    @Test func theRuntimeAPIAnswersOnlyItsOwnProcess() async throws {
        let broker = LambdaBroker()
        let port = ProcessSupervisor.freePort()
        let child = Mutex<Int32?>(nil)
        let api = LambdaRuntimeAPI(broker: broker, port: port, function: "review", maxResponseBytes: 1 << 20,
                                   processID: { child.withLock { $0 } }, onPoll: {}, logger: Logger(label: "test"))
        let group = ServiceGroup(services: [api], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let base = "http://127.0.0.1:\(port)/2018-06-01/runtime"
            var listening = false
            for _ in 0..<200 where !listening {
                listening = await ProcessSupervisor.listens(port: port)
                if !listening { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(listening)
            // Many connections first: the child's is then past the first page of /proc/net/tcp
            // (a read that trusted the file's size of 0 stopped there, and refused the child).
            var crowd: [Int32] = []
            for _ in 0..<80 {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                if connected == 0 { crowd.append(fd) } else { close(fd) }
            }
            defer { for fd in crowd { close(fd) } }
            #expect(crowd.count == 80)
            // The process: polls once and posts back what it got, then prints the answer's status.
            let script = """
                import sys, urllib.request
                sys.stdin.readline()  # once the test knows this process's pid
                with urllib.request.urlopen("\(base)/invocation/next") as r:
                    rid = r.headers["Lambda-Runtime-Aws-Request-Id"]; body = r.read()
                req = urllib.request.Request(f"\(base)/invocation/{rid}/response", data=body[::-1], method="POST")
                print(urllib.request.urlopen(req).status)
                """
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", script]
            let output = Pipe()
            process.standardOutput = output
            let errors = Pipe(), input = Pipe()
            process.standardError = errors
            process.standardInput = input
            try process.run()
            child.withLock { $0 = process.processIdentifier }
            try input.fileHandleForWriting.write(contentsOf: Data("go\n".utf8))
            let result = await broker.invoke(.init(id: "inv-1", body: Array("abc".utf8), deadlineMilliseconds: 0, traceID: nil), timeout: .seconds(10))
            #expect(result == .response(Array("cba".utf8)))
            process.waitUntilExit()
            #expect(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == "202\n",
                    "\(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")

            // This test's own process is not the function's: refused, and nothing is handed out.
            let foreign = try await runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", "\(base)/invocation/next"])
            #expect(foreign == "403")
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    func runCommand(_ path: String, _ arguments: [String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
