import Foundation
import Sluice
import SluicePostgres
import SluiceRedis
import Testing

/// Datasets of three shapes side by side through the real pipeline, every function its own
/// process: `events` (gen_events.py), `orders` (a CSV whose schema is detected on its first
/// upload) and `readings` (NDJSON with a declared schema and a key of two fields).
@Suite(.serialized) struct DatasetsEndToEndTests {
    static func manifests() throws -> [String: String] {
        var manifests = try PipelineFixture.pipelineManifests()
        let root = try TestEnvironment.get().packageRoot
        manifests["warehouse"] = try String(contentsOfFile: "\(root)/functions/warehouse/function.yaml", encoding: .utf8)
        manifests["privacy"] = try String(contentsOfFile: "\(root)/functions/privacy/function.yaml", encoding: .utf8)
        return manifests
    }

    /// `count` orders as CSV with ids from `first`, dated today; `bad` rows broken one way each.
    static func ordersCSV(first: Int, count: Int) -> Data {
        let iso = ISO8601DateFormatter()
        var text = "order_id,order_date,customer_email,amount,country\n"
        for n in first..<(first + count) {
            let date = iso.string(from: Date().addingTimeInterval(-Double(n)))
            text += "ord-\(n),\(date),buyer\(n % 17)@example.com,\(Double(n % 500) + 0.25),\(["DE", "FR", "GB"][n % 3])\n"
        }
        return Data(text.utf8)
    }

    static func readings(count: Int, sensors: Int) -> [JSONValue] {
        let iso = ISO8601DateFormatter()
        let base = Date().addingTimeInterval(-3600)
        return (0..<count).map { n in
            let sensor: JSONValue = .string("s-\(n % sensors)")
            let taken: JSONValue = .string(iso.string(from: base.addingTimeInterval(Double(n / sensors))))
            let celsius: Double = 20 + Double(n % 10) / 2
            let reading: JSONValue = ["celsius": .double(celsius), "humidity": .int(Int64(40 + n % 20))]
            let site: JSONValue = .string(n % 2 == 0 ? "north" : "south")
            return ["sensor_id": sensor, "taken_at": taken, "reading": reading, "site": site]
        }
    }

    static let readingsSpec: JSONValue = [
        "name": "readings",
        "description": "Sensor readings, one per sensor and instant.",
        "fields": [
            ["name": "sensor_id", "type": "string", "required": true],
            ["name": "taken_at", "type": "timestamp", "required": true],
            ["name": "reading.celsius", "type": "number", "required": true, "column": "celsius"],
            ["name": "reading.humidity", "type": "integer", "column": "humidity"],
            ["name": "site", "type": "string"],
        ],
        "key": ["sensor_id", "taken_at"],
        "time": "taken_at",
        "indexes": [["site"]],
    ]

    func post(_ fixture: PipelineFixture, _ path: String, body: Data, type: String) async throws -> (status: Int, body: JSONValue) {
        let response = try await HTTP.request("POST", fixture.url("ingest", path), body: body, headers: ["Content-Type": type])
        return (response.status, (try? JSONParser().parse(Array(response.body))) ?? .string(response.text))
    }

    func get(_ fixture: PipelineFixture, _ path: String) async throws -> (status: Int, body: JSONValue) {
        let response = try await HTTP.request("GET", fixture.url("warehouse", path))
        return (response.status, (try? JSONParser().parse(Array(response.body))) ?? .string(response.text))
    }

    func ndjson(_ records: [JSONValue]) -> Data {
        var body = Data()
        for record in records { body.append(contentsOf: record.serializedBytes + [UInt8(ascii: "\n")]) }
        return body
    }

    func rows(_ fixture: PipelineFixture, _ table: String) async throws -> Int {
        Int(try await fixture.clients.postgres.query("SELECT count(*) FROM \(identifier: "datasets").\(identifier: table)").scalar ?? "") ?? -1
    }

    @Test func threeDatasetsLoadSideBySideWithExactCounts() async throws {
        try await PipelineFixture.with(db: 17, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            try await fixture.start("warehouse")

            // events: the shipped dataset, unchanged.
            let workload = try await GeneratedWorkload.make(count: 5_000, seed: 171, format: "ndjson", in: fixture.directory)
            let upload = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            #expect(upload.status == 202)
            #expect(upload.body["dataset"]?.stringValue == "events")
            let eventsJob = try await fixture.waitForJob(try #require(upload.body["job_id"]?.stringValue))
            #expect(eventsJob["status"]?.stringValue == "completed")
            for name in ["loaded", "quarantined", "stale", "duplicate", "no_consent"] {
                #expect(eventsJob.count(name) == workload.expected[name], "events counts.\(name)")
            }

            // orders: an upload to a dataset that does not exist yet makes it from its first rows.
            let first = try await post(fixture, "/api/v1/datasets/orders/ingest", body: Self.ordersCSV(first: 0, count: 1_200), type: "text/csv")
            #expect(first.status == 202, "\(first.body)")
            let detected = try #require(first.body["detected"])
            #expect(detected["key"] == ["order_id"])
            let types = Dictionary(uniqueKeysWithValues: (detected["fields"]?.arrayValue ?? []).compactMap { field in
                field["name"]?.stringValue.map { ($0, field["type"]?.stringValue ?? "") }
            })
            #expect(types == ["order_id": "string", "order_date": "timestamp", "customer_email": "string", "amount": "number", "country": "string"])
            let firstJob = try await fixture.waitForJob(try #require(first.body["job_id"]?.stringValue))
            #expect(firstJob["status"]?.stringValue == "completed")
            #expect(firstJob["dataset"]?.stringValue == "orders")
            #expect(firstJob.count("loaded") == 1_200)
            #expect(try await rows(fixture, "orders") == 1_200)

            // Bad rows of a second upload are quarantined, each naming its column; the rest load.
            var csv = String(decoding: Self.ordersCSV(first: 1_200, count: 100), as: UTF8.self)
            csv += "ord-bad-1,2026-13-45T00:00:00Z,x@example.com,1.5,DE\n"  // order_date: invalid_timestamp
            csv += "ord-bad-2,\(ISO8601DateFormatter().string(from: Date())),y@example.com,lots,DE\n"  // amount: wrong_type
            csv += ",\(ISO8601DateFormatter().string(from: Date())),z@example.com,2.5,FR\n"  // order_id: missing_field
            csv += "ord-5,\(ISO8601DateFormatter().string(from: Date())),w@example.com,3.5,GB\n"  // loaded before: duplicate
            let second = try await post(fixture, "/api/v1/datasets/orders/ingest", body: Data(csv.utf8), type: "text/csv")
            #expect(second.status == 202, "\(second.body)")
            #expect(second.body["detected"] == nil)
            let secondID = try #require(second.body["job_id"]?.stringValue)
            let secondJob = try await fixture.waitForJob(secondID)
            #expect(secondJob.count("received") == 104)
            #expect(secondJob.count("loaded") == 100)
            #expect(secondJob.count("quarantined") == 3)
            #expect(secondJob.count("duplicate") == 1)
            let quarantined = try await fixture.clients.postgres.query(
                "SELECT reason, field, dataset FROM quarantine WHERE job_id = \(secondID)::uuid ORDER BY field").rows
            #expect(quarantined == [["wrong_type", "amount", "orders"], ["invalid_timestamp", "order_date", "orders"],
                                    ["missing_field", "order_id", "orders"]])
            #expect(try await rows(fixture, "orders") == 1_300)
            // The values are typed in the table.
            let typed = try await fixture.clients.postgres.query(
                "SELECT pg_typeof(amount)::text, pg_typeof(order_date)::text FROM datasets.orders LIMIT 1").rows
            #expect(typed == [["double precision", "timestamp with time zone"]])

            // A re-upload is all duplicates and loads nothing.
            let again = try await post(fixture, "/api/v1/datasets/orders/ingest", body: Self.ordersCSV(first: 0, count: 1_200), type: "text/csv")
            let againJob = try await fixture.waitForJob(try #require(again.body["job_id"]?.stringValue))
            #expect(againJob.count("duplicate") == 1_200)
            #expect(againJob.count("loaded") == 0)
            #expect(try await rows(fixture, "orders") == 1_300)

            // readings: declared first, then loaded; its key is two fields.
            let declared = try await post(fixture, "/api/v1/datasets", body: Data(Self.readingsSpec.serializedBytes), type: "application/json")
            #expect(declared.status == 201, "\(declared.body)")
            #expect(declared.body["version"]?.intValue == 1)
            #expect(declared.body["table"]?.stringValue == "datasets.readings")
            var records = Self.readings(count: 600, sensors: 6)
            records.append(records[10])  // the same sensor and instant: a duplicate
            records.append(["sensor_id": "s-x", "taken_at": "not a time", "reading": ["celsius": 1.5]])  // invalid_timestamp
            records.append(["sensor_id": "s-x", "taken_at": .string(ISO8601DateFormatter().string(from: Date())), "reading": ["celsius": "hot"]])  // wrong_type
            records.append(["taken_at": .string(ISO8601DateFormatter().string(from: Date())), "reading": ["celsius": 1.5]])  // missing_field
            let loaded = try await post(fixture, "/api/v1/datasets/readings/ingest", body: ndjson(records), type: "application/x-ndjson")
            #expect(loaded.status == 202, "\(loaded.body)")
            let readingsID = try #require(loaded.body["job_id"]?.stringValue)
            let readingsJob = try await fixture.waitForJob(readingsID)
            #expect(readingsJob.count("loaded") == 600)
            #expect(readingsJob.count("duplicate") == 1)
            #expect(readingsJob.count("quarantined") == 3)
            let readingReasons = try await fixture.clients.postgres.query(
                "SELECT reason, field FROM quarantine WHERE job_id = \(readingsID)::uuid ORDER BY field").rows
            #expect(readingReasons == [["wrong_type", "reading.celsius"], ["missing_field", "sensor_id"], ["invalid_timestamp", "taken_at"]])
            #expect(try await rows(fixture, "readings") == 600)
            let columns = try await fixture.clients.postgres.query(
                "SELECT celsius, humidity, site FROM datasets.readings WHERE sensor_id = 's-0' ORDER BY taken_at LIMIT 1").rows
            #expect(columns == [["20", "40", "north"]])

            // Records: pages in key order with a cursor, filters by column, one record by its key.
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await get(fixture, "/api/v1/datasets/readings/records?limit=250" + (cursor.map { "&after=\($0)" } ?? ""))
                #expect(page.status == 200, "\(page.body)")
                let items = page.body["records"]?.arrayValue ?? []
                #expect(items.count <= 250)
                seen += items.map { "\($0["sensor_id"]?.stringValue ?? "")|\($0["taken_at"]?.stringValue ?? "")" }
                cursor = page.body["next_cursor"]?.stringValue
            } while cursor != nil && seen.count < 10_000
            #expect(seen.count == 600)
            #expect(Set(seen).count == 600)
            #expect(seen == seen.sorted())  // key order: sensor_id, then taken_at (ISO text sorts as time here)
            let north = try await get(fixture, "/api/v1/datasets/readings/records?site=north&limit=1000")
            #expect(north.body["records"]?.arrayValue?.count == 300)
            #expect(north.body["next_cursor"] == .null)
            let notANumber = try await get(fixture, "/api/v1/datasets/readings/records?humidity=many")
            #expect(notANumber.status == 400)
            #expect(notANumber.body["code"]?.stringValue == "invalid_parameter")
            #expect((try await get(fixture, "/api/v1/datasets/readings/records?nosuch=1")).status == 400)
            #expect((try await get(fixture, "/api/v1/datasets/readings/records?after=bm90IGEgY3Vyc29y")).status == 400)
            let firstTaken = try #require(records[0]["taken_at"]?.stringValue)
            let keyPath = "/api/v1/datasets/readings/records/s-0,\(firstTaken)"
            let one = try await get(fixture, keyPath)
            #expect(one.status == 200, "\(one.body)")
            #expect(one.body["celsius"] == 20)
            #expect(one.body["site"]?.stringValue == "north")
            let replaced = try await HTTP.request("PUT", fixture.url("warehouse", keyPath), body: Data(#"{"celsius": 30.5, "site": "east"}"#.utf8),
                                                  headers: ["Content-Type": "application/json"])
            #expect(replaced.status == 200, "\(replaced.text)")
            let after = try JSONParser().parse(Array(replaced.body))
            #expect(after["celsius"] == 30.5)
            #expect(after["site"]?.stringValue == "east")
            #expect(after["humidity"] == .null)  // left out: null (PUT replaces)
            let rekey = try await HTTP.request("PUT", fixture.url("warehouse", keyPath), body: Data(#"{"sensor_id": "s-9"}"#.utf8),
                                               headers: ["Content-Type": "application/json"])
            #expect(rekey.status == 400)
            #expect(rekey.text.contains("immutable_field"))
            let wrong = try await HTTP.request("PUT", fixture.url("warehouse", keyPath), body: Data(#"{"celsius": "warm"}"#.utf8),
                                               headers: ["Content-Type": "application/json"])
            #expect(wrong.status == 400)
            #expect(wrong.text.contains("wrong_type"))
            #expect((try await HTTP.request("DELETE", fixture.url("warehouse", keyPath))).status == 204)
            #expect((try await get(fixture, keyPath)).status == 404)
            #expect((try await HTTP.request("DELETE", fixture.url("warehouse", keyPath))).status == 404)
            #expect((try await get(fixture, "/api/v1/datasets/readings/records/s-0")).status == 400)  // half a key
            #expect((try await get(fixture, "/api/v1/datasets/orders/records/ord-7")).body["amount"] == 7.25)
            #expect(try await rows(fixture, "readings") == 599)

            // The README's sample: seven orders loaded, A-1003 twice (one duplicate), typed columns.
            let root = try TestEnvironment.get().packageRoot
            let sample = try await post(fixture, "/api/v1/datasets/sample_orders/ingest",
                                        body: try Data(contentsOf: URL(fileURLWithPath: "\(root)/samples/orders.csv")), type: "text/csv")
            #expect(sample.status == 202, "\(sample.body)")
            #expect(sample.body["received"] == 8)
            let sampleJob = try await fixture.waitForJob(try #require(sample.body["job_id"]?.stringValue))
            #expect(sampleJob.count("loaded") == 7)
            #expect(sampleJob.count("duplicate") == 1)
            #expect(try await fixture.clients.postgres.query(
                "SELECT pg_typeof(amount)::text, pg_typeof(order_date)::text FROM datasets.sample_orders LIMIT 1").rows
                    == [["double precision", "timestamp with time zone"]])

            // An upload to a dataset that does not exist, by a caller who may not create one: 404.
            let target = fixture.url("ingest", "/api/v1/datasets/nothing_here/ingest")
            let refused = try await HTTP.request("POST", target, body: Data("{\"id\": 1}\n".utf8), headers: [
                "Content-Type": "application/x-ndjson",
                TestCaller.header: TestCaller.assertion(method: "POST", url: target, roles: ["ingest"]),
            ])
            #expect(refused.status == 404)
            #expect(refused.text.contains("dataset_not_found"))

            // The API lists the three with their counts; a dataset's profile describes each column.
            let list = try await get(fixture, "/api/v1/datasets")
            #expect(list.status == 200)
            let byName = Dictionary(uniqueKeysWithValues: (list.body["datasets"]?.arrayValue ?? []).compactMap { item in
                item["name"]?.stringValue.map { ($0, item) }
            })
            #expect(Set(byName.keys) == ["events", "orders", "readings", "sample_orders"])
            #expect(byName["events"]?["rows"]?.intValue == Int64(workload.expected["loaded"]!))
            #expect(byName["orders"]?["rows"]?.intValue == 1_300)
            #expect(byName["readings"]?["rows"]?.intValue == 599)
            #expect((byName["orders"]?["bytes"]?.intValue ?? 0) > 0)
            #expect(byName["orders"]?["origin"]?.stringValue == "detected")
            #expect(byName["readings"]?["origin"]?.stringValue == "api")
            #expect(byName["events"]?["origin"]?.stringValue == "file")
            let orders = try await get(fixture, "/api/v1/datasets/orders")
            #expect(orders.status == 200)
            let profile = Dictionary(uniqueKeysWithValues: (orders.body["profile"]?.arrayValue ?? []).compactMap { item in
                item["column"]?.stringValue.map { ($0, item) }
            })
            #expect(profile["country"]?["distinct"]?.intValue == 3)
            #expect(profile["country"]?["nulls"]?.intValue == 0)
            #expect(profile["country"]?["top"]?[0]?["count"]?.intValue == 434)  // DE: 1,300 rows, n % 3 == 0 (434 of them)
            #expect(profile["order_id"]?["distinct"]?.intValue == 1_300)
            #expect(profile["amount"]?["min"]?.stringValue == "0.25")
            #expect(profile["amount"]?["max"]?.stringValue == "499.25")
            #expect((try await get(fixture, "/api/v1/datasets/nothing_here")).status == 404)
        }
    }

    /// kill -9 of each stage in turn (validate, enrich, transform, load), each mid-run, while a
    /// dataset of its own shape loads: every record is accounted for exactly once.
    @Test func killingEachStageMidRunChangesNoCount() async throws {
        try await PipelineFixture.with(db: 17, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            #expect(try await post(fixture, "/api/v1/datasets", body: Data(Self.readingsSpec.serializedBytes), type: "application/json").status == 201)
            var records = Self.readings(count: 80_000, sensors: 80)
            for n in stride(from: 0, to: 80_000, by: 400) { records.append(records[n]) }  // 200 duplicates
            let body = ndjson(records)
            let upload = Task { try await post(fixture, "/api/v1/datasets/readings/ingest", body: body, type: "application/x-ndjson") }
            for (index, stage) in ["validate", "enrich", "transform", "load"].enumerated() {
                let threshold = Int64(8_000 * (index + 1))
                let deadline = ContinuousClock.now + .seconds(120)
                var seen: Int64 = 0
                while ContinuousClock.now < deadline {
                    if let key = try await fixture.clients.redis.send(["KEYS", "{sluice}:job:*"]).array?.first?.text {
                        seen = try await fixture.clients.redis.send(["HGET", RedisArgument(key), RedisArgument("fn.\(stage).in")]).int ?? 0
                        if seen >= threshold { break }
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(seen >= threshold && seen < 80_200, "\(stage) had seen \(seen)")
                let victim = try #require(fixture.processes[stage])
                victim.signal(SIGKILL)
                #expect(await victim.waitExit(timeout: .seconds(10)) == 128 + SIGKILL)
                try await fixture.start(stage)
            }
            let answer = try await upload.value
            #expect(answer.status == 202, "\(answer.body)")
            let job = try await fixture.waitForJob(try #require(answer.body["job_id"]?.stringValue))
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("received") == 80_200)
            #expect(job.count("loaded") == 80_000)
            #expect(job.count("duplicate") == 200)
            #expect(job.count("quarantined") == 0)
            #expect(job.count("failed") == 0)
            #expect(try await rows(fixture, "readings") == 80_000)
        }
    }

    /// A dataset's chain routes its records: `scored` goes validate → stamp → load, leaving out
    /// enrich and transform and passing through a function of its own (stamp, which appends its
    /// name to each record's `stages`), while `events` keeps its four steps. A chain that names a
    /// function without a manifest is refused when the dataset is declared.
    @Test func theChainRoutesEachDatasetThroughItsOwnFunctions() async throws {
        var manifests = try Self.manifests()
        // No outputs of its own: where stamp's events go is the chain's to say.
        manifests["stamp"] = "handler: stamp\ntriggers: [{stream: stamp}]\nexpose: [step]\n"
        try await PipelineFixture.with(db: 17, manifests: manifests) { fixture in
            try await fixture.startPipeline()
            try await fixture.start("stamp")
            try await fixture.start("warehouse")
            func spec(_ name: String, chain: [JSONValue]) -> JSONValue { [
                "name": .string(name),
                "fields": [
                    ["name": "id", "type": "string", "required": true],
                    ["name": "score", "type": "number", "required": true],
                    ["name": "stages", "type": "array"],
                ],
                "key": ["id"],
                "chain": .array(chain),
            ] }
            let scored = spec("scored", chain: ["validate", "stamp", "load"])
            #expect(try await post(fixture, "/api/v1/datasets", body: Data(scored.serializedBytes), type: "application/json").status == 201)

            // 300 records, 2 without a score (quarantined by validate, so stamp never sees them).
            var records: [JSONValue] = (0..<300).map { ["id": .string("r-\($0)"), "score": .double(Double($0) / 10)] }
            records[7] = ["id": "r-7"]
            records[8] = ["id": "r-8", "score": "high"]
            let upload = try await post(fixture, "/api/v1/datasets/scored/ingest", body: ndjson(records), type: "application/x-ndjson")
            #expect(upload.status == 202, "\(upload.body)")
            let id = try #require(upload.body["job_id"]?.stringValue)
            let job = try await fixture.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("loaded") == 298)
            #expect(job.count("quarantined") == 2)
            #expect(try await fixture.counter("fn.validate.in", jobs: [id]) == 300)
            #expect(try await fixture.counter("fn.stamp.in", jobs: [id]) == 298)
            #expect(try await fixture.counter("fn.enrich.in", jobs: [id]) == 0)
            #expect(try await fixture.counter("fn.transform.in", jobs: [id]) == 0)
            #expect(try await fixture.counter("fn.load.in", jobs: [id]) == 298)
            let stages = try await fixture.clients.postgres.query(
                "SELECT stages::text, count(*) FROM datasets.scored GROUP BY 1").rows
            #expect(stages == [["[\"stamp\"]", "298"]])

            // events, beside it, still flows through all four steps and never through stamp.
            let workload = try await GeneratedWorkload.make(count: 1_000, seed: 172, format: "ndjson", in: fixture.directory)
            let events = try await fixture.upload(file: workload.path, contentType: "application/x-ndjson")
            let eventsID = try #require(events.body["job_id"]?.stringValue)
            let eventsJob = try await fixture.waitForJob(eventsID)
            #expect(eventsJob.count("loaded") == workload.expected["loaded"])
            #expect(try await fixture.counter("fn.stamp.in", jobs: [eventsID]) == 0)
            #expect(try await fixture.counter("fn.enrich.in", jobs: [eventsID]) > 0)

            // A chain naming a function that no manifest declares changes nothing.
            let orphan = spec("orphan", chain: ["validate", "nowhere", "load"])
            let refused = try await post(fixture, "/api/v1/datasets", body: Data(orphan.serializedBytes), type: "application/json")
            #expect(refused.status == 422, "\(refused.body)")
            #expect(refused.body["code"]?.stringValue == "dataset_invalid")
            #expect(refused.body["key"]?.stringValue == "chain[1]")
            #expect(try await get(fixture, "/api/v1/datasets/orphan").status == 404)
        }
    }

    /// A dataset's subject and personal-data fields are stored as pseudonyms, consent is checked
    /// by its subject, and erasing a subject removes their rows from every dataset, each counted.
    @Test func privacyPerDatasetAndErasureAcrossDatasets() async throws {
        try await PipelineFixture.with(db: 17, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            try await fixture.start("privacy")
            let spec: JSONValue = [
                "name": "visits",
                "fields": [
                    ["name": "visit_id", "type": "string", "required": true],
                    ["name": "visitor", "type": "string", "required": true],
                    ["name": "contact", "type": "string", "pii": true],
                    ["name": "page", "type": "string"],
                ],
                "key": "visit_id", "subject": "visitor",
            ]
            #expect(try await post(fixture, "/api/v1/datasets", body: Data(spec.serializedBytes), type: "application/json").status == 201)
            // Bob withdrew consent to analytics: his visits are dropped as no_consent.
            let withdrawn = try await HTTP.request("PUT", fixture.url("privacy", "/api/v1/consents/bob"), body: Data(#"{"purpose": "analytics", "granted": false}"#.utf8),
                                                   headers: ["Content-Type": "application/json"])
            #expect(withdrawn.status == 200, "\(withdrawn.text)")
            let visitors = ["alice", "bob", "carol"]
            let visits: [JSONValue] = (0..<30).map { n in
                ["visit_id": .string("v-\(n)"), "visitor": .string(visitors[n % 3]), "contact": .string("+44 20 7946 \(1000 + n)"), "page": .string("/p/\(n)")]
            }
            let upload = try await post(fixture, "/api/v1/datasets/visits/ingest", body: ndjson(visits), type: "application/x-ndjson")
            let job = try await fixture.waitForJob(try #require(upload.body["job_id"]?.stringValue))
            #expect(job.count("loaded") == 20)
            #expect(job.count("no_consent") == 10)
            // Nothing personal is stored as given: visitor and contact are pseudonyms.
            let stored = try await fixture.clients.postgres.query("SELECT visitor, contact FROM datasets.visits").rows
            #expect(stored.count == 20)
            #expect(stored.allSatisfy { ($0[0] ?? "").hasPrefix("u_") && ($0[1] ?? "").hasPrefix("u_") })
            #expect(!stored.contains { $0[0] == "alice" || ($0[1] ?? "").contains("7946") })
            // Alice also has events.
            let now = ISO8601DateFormatter().string(from: Date())
            let aliceEvents = ndjson((0..<5).map { n in
                ["metadata": ["event_id": .string("alice-\(n)"), "timestamp": .string(now)], "user": ["id": "alice"], "payload": ["event_type": "click"]]
            })
            let eventsJob = try await fixture.waitForJob(try #require(try await fixture.upload(bytes: aliceEvents, contentType: "application/x-ndjson").body["job_id"]?.stringValue))
            #expect(eventsJob.count("loaded") == 5)
            let erased = try await HTTP.request("DELETE", fixture.url("privacy", "/api/v1/subjects/alice"))
            #expect(erased.status == 200, "\(erased.text)")
            let report = try JSONParser().parse(Array(erased.body))
            #expect(report["removed"]?["datasets"]?["visits"] == 10)
            #expect(report["removed"]?["datasets"]?["events"] == 5)
            #expect(report["removed"]?["events"] == 5)
            #expect(try await rows(fixture, "visits") == 10)
            let pseudonym = try #require(report["subject"]?.stringValue)
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM datasets.visits WHERE visitor = \(pseudonym)").scalar == "0")
            // The audit row names each dataset's count.
            let audit = try await fixture.clients.postgres.query(
                "SELECT detail->'datasets'->>'visits', detail->'datasets'->>'events' FROM audit_log WHERE action = 'eraseSubject' AND subject = \(pseudonym)").rows
            #expect(audit == [["10", "5"]])
            // A later upload of Alice's visits is fenced: not loaded (no_consent).
            let again = try await post(fixture, "/api/v1/datasets/visits/ingest",
                                       body: ndjson([["visit_id": "v-100", "visitor": "alice", "page": "/again"]]), type: "application/x-ndjson")
            let againJob = try await fixture.waitForJob(try #require(again.body["job_id"]?.stringValue))
            #expect(againJob.count("loaded") == 0)
            #expect(againJob.count("no_consent") == 1)
        }
    }

    /// Names that try SQL injection, quoting tricks, reserved words, Unicode look-alikes, or
    /// 10,000 columns are refused with a problem naming what is wrong, and change nothing.
    @Test func hostileNamesAreRefusedAndChangeNothing() async throws {
        try await PipelineFixture.with(db: 17, manifests: try Self.manifests()) { fixture in
            try await fixture.start("ingest")
            func tables() async throws -> String {
                try await fixture.clients.postgres.query(
                    "SELECT string_agg(table_schema || '.' || table_name, ',' ORDER BY 1) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").scalar ?? ""
            }
            let before = try await tables()
            let hostile = ["orders; DROP TABLE jobs; --", "orders\"", "x\" (a int); DROP TABLE jobs; --", "select", "ordеrs", "Orders", "pg_x",
                           String(repeating: "a", count: 64)]
            for name in hostile {
                var spec = Self.readingsSpec
                spec.setValue(.string(name), atPath: "name")
                let answer = try await post(fixture, "/api/v1/datasets", body: Data(spec.serializedBytes), type: "application/json")
                #expect(answer.status == 422, "\(name): \(answer.body)")
                #expect(answer.body["code"]?.stringValue == "dataset_bad_name", "\(name)")
                #expect(answer.body["key"]?.stringValue == "name")
            }
            for column in ["amount\"; DROP TABLE jobs; --", "from", "ｃolumn", "col\u{200B}", "job_id", "xmin"] {
                let spec: JSONValue = ["name": "hostile", "fields": [["name": "id", "type": "string", "required": true], ["name": "v", "type": "string", "column": .string(column)]], "key": "id"]
                let answer = try await post(fixture, "/api/v1/datasets", body: Data(spec.serializedBytes), type: "application/json")
                #expect(answer.status == 422, "\(column): \(answer.body)")
                #expect(answer.body["code"]?.stringValue == "dataset_bad_name")
                #expect(answer.body["key"]?.stringValue == "fields[1].column")
            }
            // A CSV header that cannot be a column, uploaded to a new dataset: refused, no job left open, no table.
            let header = try await post(fixture, "/api/v1/datasets/widgets/ingest", body: Data("id,select\n1,2\n".utf8), type: "text/csv")
            #expect(header.status == 422, "\(header.body)")
            #expect(header.body["code"]?.stringValue == "dataset_bad_name")
            #expect(header.body["column"]?.stringValue == "select")
            // 10,000 columns.
            var fields: [JSONValue] = [["name": "id", "type": "string", "required": true]]
            for n in 0..<10_000 { fields.append(["name": .string("c\(n)"), "type": "integer"]) }
            let wide = try await post(fixture, "/api/v1/datasets", body: Data(JSONValue.object(["name": "wide", "fields": .array(fields), "key": "id"]).serializedBytes),
                                      type: "application/json")
            // Larger than a spec may be (256 KiB): refused before it is read.
            #expect(wide.status == 413)
            #expect(wide.body["code"]?.stringValue == "spec_too_large")
            // 1,001 fields fit the size, not the table.
            let wider = try await post(fixture, "/api/v1/datasets", body: Data(JSONValue.object(["name": "wide", "fields": .array(Array(fields.prefix(1002))), "key": "id"]).serializedBytes),
                                       type: "application/json")
            #expect(wider.status == 422)
            #expect(wider.body["code"]?.stringValue == "dataset_too_many_fields")
            var row = "id"
            for n in 0..<10_000 { row += ",c\(n)" }
            let wideCSV = try await post(fixture, "/api/v1/datasets/wide/ingest", body: Data((row + "\n" + row + "\n").utf8), type: "text/csv")
            #expect(wideCSV.status == 422, "\(wideCSV.body)")
            #expect(wideCSV.body["code"]?.stringValue == "dataset_too_many_fields")
            #expect(try await tables() == before)
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM dataset_specs WHERE name <> 'events'").scalar == "0")
        }
    }

    /// A new optional column is added while uploads continue; a narrowing change is refused
    /// with the column named, and goes through only as a declared migration.
    @Test func schemaEvolution() async throws {
        try await PipelineFixture.with(db: 17, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            let declared = try await post(fixture, "/api/v1/datasets", body: Data(Self.readingsSpec.serializedBytes), type: "application/json")
            #expect(declared.status == 201)
            let all = Self.readings(count: 3_000, sensors: 10)
            // Uploads continue while the column is added.
            let uploads = Task {
                var jobs: [String] = []
                for part in 0..<6 {
                    let answer = try await post(fixture, "/api/v1/datasets/readings/ingest", body: ndjson(Array(all[(part * 500)..<((part + 1) * 500)])),
                                                type: "application/x-ndjson")
                    if let id = answer.body["job_id"]?.stringValue { jobs.append(id) }
                }
                return jobs
            }
            try await Task.sleep(for: .milliseconds(300))
            var evolved = Self.readingsSpec
            var fields = evolved["fields"]?.arrayValue ?? []
            fields.append(["name": "battery", "type": "number"])
            evolved.setValue(.array(fields), atPath: "fields")
            let change = try await HTTP.request("PUT", fixture.url("ingest", "/api/v1/datasets/readings"), body: Data(evolved.serializedBytes),
                                                headers: ["Content-Type": "application/json"])
            #expect(change.status == 200, "\(change.text)")
            let changed = try JSONParser().parse(Array(change.body))
            #expect(changed["version"]?.intValue == 2)
            #expect(changed["changes"] == [["add_column": "battery", "type": "number"]])
            let jobs = try await uploads.value
            #expect(jobs.count == 6)
            var loaded = 0
            for id in jobs { loaded += try await fixture.waitForJob(id).count("loaded") }
            #expect(loaded == 3_000)
            // Records with the new field load it.
            var late = Self.readings(count: 10, sensors: 1)
            for index in late.indices {
                late[index].setValue("s-battery", atPath: "sensor_id")
                late[index].setValue(.double(0.5), atPath: "battery")
            }
            let lateJob = try await fixture.waitForJob(try #require(
                try await post(fixture, "/api/v1/datasets/readings/ingest", body: ndjson(late), type: "application/x-ndjson").body["job_id"]?.stringValue))
            #expect(lateJob.count("loaded") == 10)
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM datasets.readings WHERE battery = 0.5").scalar == "10")
            #expect(try await rows(fixture, "readings") == 3_010)
            // Narrowing celsius (number → integer) is refused, naming the column; nothing changes.
            var narrowed = evolved
            fields = narrowed["fields"]?.arrayValue ?? []
            fields[2].setValue("integer", atPath: "type")
            narrowed.setValue(.array(fields), atPath: "fields")
            let refused = try await HTTP.request("PUT", fixture.url("ingest", "/api/v1/datasets/readings"), body: Data(narrowed.serializedBytes),
                                                 headers: ["Content-Type": "application/json"])
            #expect(refused.status == 409)
            let problem = try JSONParser().parse(Array(refused.body))
            #expect(problem["code"]?.stringValue == "schema_incompatible")
            #expect(problem["column"]?.stringValue == "celsius")
            #expect(try await fixture.clients.postgres.query(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = 'datasets' AND table_name = 'readings' AND column_name = 'celsius'").scalar
                    == "double precision")
            // A new required column is refused too, unless declared as a migration.
            var required = evolved
            fields = required["fields"]?.arrayValue ?? []
            fields.append(["name": "unit", "type": "string", "required": true])
            required.setValue(.array(fields), atPath: "fields")
            let plain = try await HTTP.request("PUT", fixture.url("ingest", "/api/v1/datasets/readings"), body: Data(required.serializedBytes),
                                               headers: ["Content-Type": "application/json"])
            #expect(plain.status == 409)
            let migration = try await HTTP.request("PUT", fixture.url("ingest", "/api/v1/datasets/readings?migration=true"),
                                                   body: Data(required.serializedBytes), headers: ["Content-Type": "application/json"])
            #expect(migration.status == 200, "\(migration.text)")
            #expect(try JSONParser().parse(Array(migration.body))["version"]?.intValue == 3)
        }
    }
}
