import Foundation
import Sluice
import SluiceFunctions
import SluicePostgres
import SluiceRedis
import Testing

@Suite("Invoke and migrate, end to end", .serialized)
struct InvokeAndMigrateEndToEndTests {
    /// `POST /invoke` answers the outcomes the stream path produced for the same events.
    @Test func invokeAnswersWhatTheStreamPathDid() async throws {
        let manifests = [
            "intake": "handler: intake\ntriggers: [{http: {}}]\noutputs: [filter]\nbatch: 1000\n",
            "filter": "handler: filter\ntriggers: [{stream: filter}]\noutputs: [tag]\nvisibility_timeout: 2s\n",
        ]
        try await PipelineFixture.with(db: 5, manifests: manifests) { pipeline in
            try await pipeline.start("intake")
            try await pipeline.start("filter")
            let workload = Workload(count: 300, prefix: "inv")
            let job = try await pipeline.upload(workload.events)
            let redis = pipeline.clients.redis
            let deadline = ContinuousClock.now + .seconds(20)
            while try await pipeline.counter("fn.filter.in", jobs: [job]) < 300, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let streamForwarded = try await redis.range(stream: pipeline.keys.stream("tag"))
                .flatMap { try ChunkCodec.decode(id: $0.id, fields: $0.fields).events.map(\.value) }
            let streamQuarantined = try await redis.range(stream: pipeline.keys.stream("quarantine"))
                .flatMap { try ChunkCodec.decode(id: $0.id, fields: $0.fields).events.map(\.value) }

            let body = JSONValue.array(workload.events).serializedBytes
            let response = try await HTTP.request("POST", pipeline.url("filter", "/invoke"), body: Data(body),
                                                  headers: ["Content-Type": "application/json"])
            #expect(response.status == 200)
            let answer = try JSONParser().parse(Array(response.body))
            #expect(answer["function"] == "filter")
            let outcomes = try #require(answer["outcomes"]?.arrayValue)
            #expect(outcomes.count == 300)
            let forwarded = outcomes.filter { $0["outcome"] == "forward" }.compactMap { $0["event"] }
            let dropped = outcomes.filter { $0["outcome"] == "drop" }
            let quarantined = outcomes.filter { $0["outcome"] == "quarantine" }
            #expect(forwarded == streamForwarded)
            #expect(forwarded.count == workload.expectedSunk)
            #expect(dropped.count == workload.expectedDropped)
            #expect(dropped.allSatisfy { $0["reason"] == "filtered" })
            #expect(try await pipeline.counter("dropped.filtered", jobs: [job]) == dropped.count)
            #expect(quarantined.map { $0["event"] } == streamQuarantined.map { $0["event"] })
            #expect(quarantined.map { $0["reason"] } == streamQuarantined.map { $0["reason"] })

            // Bad bodies get problems with stable codes; the process stays up.
            let bad = try await HTTP.request("POST", pipeline.url("filter", "/invoke"), body: Data("[{\"id\": 1,}]".utf8), headers: ["Content-Type": "application/json"])
            #expect(bad.status == 400)
            #expect(bad.headers["content-type"] == "application/problem+json")
            let problem = try JSONParser().parse(Array(bad.body))
            #expect(problem["code"] == "invalid_json")
            #expect(problem["offset"] == 10)
            let notArray = try await HTTP.request("POST", pipeline.url("filter", "/invoke"), body: Data("{}".utf8), headers: ["Content-Type": "application/json"])
            #expect(notArray.status == 400)
            #expect(try JSONParser().parse(Array(notArray.body))["code"] == "invalid_events")
            let untyped = try await HTTP.request("POST", pipeline.url("filter", "/invoke"), body: Data("[]".utf8), headers: ["Content-Type": "text/plain"])
            #expect(untyped.status == 415)
            #expect(try JSONParser().parse(Array(untyped.body))["code"] == "unsupported_media_type")
            let unknown = try await HTTP.request("POST", pipeline.url("filter", "/invoke/nope"), body: Data("[]".utf8), headers: ["Content-Type": "application/json"])
            #expect(unknown.status == 404)
            #expect(try JSONParser().parse(Array(unknown.body))["code"] == "unknown_function")
            let live = try await HTTP.request("GET", pipeline.url("filter", "/health/live"))
            #expect(live.status == 200)

            // `sluice invoke` prints the same outcomes as the route.
            let cli = try await runCommand(pipeline.environment.binary, ["invoke", "filter"], environment: pipeline.processEnvironment,
                                     input: Data(body))
            #expect(cli.status == 0, "\(cli.error)")
            #expect(try JSONParser().parse(Array(cli.output.utf8)) == answer)
        }
    }

    /// Three `sluice migrate` processes started at once on a new database all succeed and the
    /// schema is applied exactly once.
    @Test func concurrentMigrationsAllSucceed() async throws {
        let environment = try TestEnvironment.get()
        let name = "migrate_\(UInt32.random(in: 0...UInt32.max))"
        let clients = try TestClients(environment: environment, db: 6)
        try await clients.postgres.query("CREATE DATABASE \(identifier: name)")  // name is ours: letters and digits
        await clients.shutdown()
        let url = environment.databaseURL(named: name)  // same server, the new database
        let results = try await withThrowingTaskGroup(of: (Int32, String).self) { group in
            for _ in 0..<3 {
                group.addTask {
                    let result = try await runCommand(environment.binary, ["migrate"], environment: ["SLUICE_DATABASE_URL": url])
                    return (result.status, result.output)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.map(\.0) == [0, 0, 0], "outputs: \(results.map(\.1))")
        let applied = results.filter { $0.1.hasPrefix("applied migrations") }
        #expect(applied.count == 1, "exactly one process applies; the others find the schema current")
        #expect(results.filter { $0.1 == "schema is current (version \(PipelineSchema.latestVersion))\n" }.count == 2)
        // Every version of the pipeline's schema, once; none of the test functions' tables.
        let check = try await runCommand("/usr/bin/env", ["psql", url, "-tAc", "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations"])
        let versions = Set(PipelineSchema.migrations.map(\.version)).sorted()
        #expect(check.output == versions.map(String.init).joined(separator: ",") + "\n")
        #expect(versions == [1] + Array(3...16))
        let sink = try await runCommand("/usr/bin/env", ["psql", url, "-tAc", "SELECT to_regclass('sink_events') IS NULL"])
        #expect(sink.output == "t\n", "the sink function's table is not part of the schema")
    }
}

