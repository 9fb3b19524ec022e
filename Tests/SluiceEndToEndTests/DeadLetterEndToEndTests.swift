import Foundation
import Sluice
import SluiceRedis
import Testing

/// Retries, the dead-letter stream and `sluice dlq`, with real processes.
@Suite("Dead letters, end to end", .serialized)
struct DeadLetterEndToEndTests {
    static let manifests: [String: String] = [
        "intake": """
            handler: intake
            triggers: [{http: {}}]
            outputs: [flaky, rigid]
            batch: 100
            """,
        "flaky": """
            handler: fail
            triggers: [{stream: flaky}]
            outputs: [done]
            visibility_timeout: 2s
            retry: {max_attempts: 3, initial_backoff: 300ms, max_backoff: 1s, jitter: 0}
            environment: {FAIL_KIND: retryable}
            """,
        "rigid": """
            handler: fail
            triggers: [{stream: rigid}]
            visibility_timeout: 2s
            retry: {max_attempts: 5, initial_backoff: 300ms, max_backoff: 1s, jitter: 0}
            environment: {FAIL_KIND: permanent}
            """,
    ]

    @Test func retryableErrorsDeadLetterAfterMaxAttemptsAndRedriveRequeues() async throws {
        try await PipelineFixture.with(db: 4, manifests: Self.manifests) { pipeline in
            try await pipeline.start("intake")
            try await pipeline.start("flaky")
            try await pipeline.start("rigid")
            let events: [JSONValue] = (0..<10).map { ["id": .string("d-\($0)")] }
            let job = try await pipeline.upload(events)
            let uploaded = ContinuousClock.now

            let redis = pipeline.clients.redis
            let flakyDLQ = pipeline.keys.deadLetters("flaky"), rigidDLQ = pipeline.keys.deadLetters("rigid")
            while try await redis.send(["XLEN", RedisArgument(flakyDLQ)]).int == 0 {
                guard ContinuousClock.now - uploaded < .seconds(30) else { Issue.record("no dead letter within 30 s"); return }
                try await Task.sleep(for: .milliseconds(20))
            }
            // Waits before attempts 2 and 3: 300 ms and 600 ms without jitter.
            #expect(ContinuousClock.now - uploaded >= .milliseconds(900))
            let letters = try await redis.range(stream: flakyDLQ)
            #expect(letters.count == 1)
            let letter = try #require(letters.first)
            #expect(letter.field("attempts") == "3")
            #expect(letter.field("error_code") == "injected_failure")
            #expect(letter.field("error_kind") == "retryable")
            #expect(letter.field("error") == "this function fails on purpose (attempt 3)")
            #expect(letter.field("function") == "flaky")
            #expect(letter.field("job") == job)
            #expect(try ChunkCodec.decode(id: letter.id, fields: letter.fields).events.map(\.value) == events)

            // The permanent error went to its dead letters on the first attempt.
            let rigid = try await redis.range(stream: rigidDLQ)
            #expect(rigid.count == 1)
            #expect(rigid.first?.field("attempts") == "1")
            #expect(rigid.first?.field("error_kind") == "permanent")

            // Metrics show the retries; the job counts the events as dead-lettered.
            let flakyMetrics = try await HTTP.request("GET", pipeline.url("flaky", "/metrics")).text
            #expect(flakyMetrics.contains(#"sluice_retries_total{function="flaky"} 2"#))
            #expect(flakyMetrics.contains(#"sluice_dead_letters_total{function="flaky"} 1"#))
            #expect(flakyMetrics.contains(#"sluice_invocations_total{function="flaky",trigger="stream"} 3"#))
            let rigidMetrics = try await HTTP.request("GET", pipeline.url("rigid", "/metrics")).text
            #expect(rigidMetrics.contains(#"sluice_retries_total{function="rigid"} 0"#))
            #expect(try await pipeline.counter("dead_lettered", jobs: [job]) == 20)
            #expect(try await pipeline.backlog("flaky") == 0)
            #expect(try await pipeline.backlog("rigid") == 0)

            // `sluice dlq list` shows it.
            let list = try await runCommand(pipeline.environment.binary, ["dlq", "list", "flaky"], environment: pipeline.processEnvironment)
            #expect(list.status == 0)
            let lines = list.output.split(separator: "\n")
            #expect(lines.count == 1)
            let listed = try JSONParser().parse(Array(lines[0].utf8))
            #expect(listed["id"] == .string(letter.id))
            #expect(listed["attempts"] == 3)
            #expect(listed["events"] == 10)
            #expect(listed["error_code"] == "injected_failure")
            #expect(listed["job"] == .string(job))

            // Fix the function (now it forwards), restart it, redrive: the chunk flows on once.
            await pipeline.processes["flaky"]!.stop()
            try """
                handler: stamp
                triggers: [{stream: flaky}]
                outputs: [done]
                visibility_timeout: 2s
                """.write(toFile: "\(pipeline.functionsDirectory)/flaky/function.yaml", atomically: true, encoding: .utf8)
            try await pipeline.start("flaky")
            let redrive = try await runCommand(pipeline.environment.binary, ["dlq", "redrive", "flaky"], environment: pipeline.processEnvironment)
            #expect(redrive.status == 0)
            #expect(redrive.output == "redrove 1 chunk to flaky\n")
            #expect(try await redis.send(["XLEN", RedisArgument(flakyDLQ)]).int == 0)
            let done = pipeline.keys.stream("done")
            let deadline = ContinuousClock.now + .seconds(20)
            var forwarded: [StreamEntry] = []
            while forwarded.isEmpty, ContinuousClock.now < deadline {
                forwarded = try await redis.range(stream: done)
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(forwarded.count == 1)
            let chunk = try ChunkCodec.decode(id: forwarded[0].id, fields: forwarded[0].fields)
            #expect(chunk.jobID == job)
            #expect(chunk.events.map { $0.value["id"] } == events.map { $0["id"] })
            #expect(chunk.events.allSatisfy { $0.value["stages"] == ["flaky"] })
            // A second redrive finds nothing.
            let again = try await runCommand(pipeline.environment.binary, ["dlq", "redrive", "flaky"], environment: pipeline.processEnvironment)
            #expect(again.output == "redrove 0 chunks to flaky\n")
        }
    }
}
