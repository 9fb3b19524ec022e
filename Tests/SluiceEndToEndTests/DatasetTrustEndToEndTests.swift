import Foundation
import Sluice
import SluicePostgres
import SluicePrivacy
import Testing

/// What a dataset's spec, an uploader and an API caller may not do (issue 31), through the real
/// pipeline, every function its own process: identifiers and measurements are stored as sent,
/// a record written through the API is masked by its dataset's rules and found by erasure,
/// chains and tables are the operator's, profiles and lists follow roles, records and specs
/// follow owners, and first uploads racing to create one dataset never merge.
@Suite(.serialized) struct DatasetTrustEndToEndTests {
    static func manifests() throws -> [String: String] {
        var manifests = try DatasetsEndToEndTests.manifests()
        let root = try TestEnvironment.get().packageRoot
        // `creator` may create datasets; the catalog holds at most 12.
        manifests["ingest"] = manifests["ingest"]!.replacingOccurrences(of: "create_datasets: []", with: "create_datasets: [creator]\n  max_datasets: 12")
        // The gateway's restriction, read by the warehouse from its manifest (no gateway runs here).
        manifests["gateway"] = try String(contentsOfFile: "\(root)/functions/gateway/function.yaml", encoding: .utf8)
            .replacingOccurrences(of: "  datasets: {}", with: "  datasets: {vault: [vault_reader]}")
        return manifests
    }

    static let pseudonyms = PIIMasker(operators: [:], key: Array(PipelineFixture.pseudonymKey.utf8))

    /// Calls `function`'s own port as the gateway would for `subject` with `roles`.
    func call(_ fixture: PipelineFixture, _ method: String, _ function: String, _ path: String, body: Data? = nil,
              type: String = "application/json", subject: String = "e2e-test", roles: [String] = ["admin", "analyst", "ingest"]) async throws
        -> (status: Int, body: JSONValue) {
        let url = fixture.url(function, path)
        let response = try await HTTP.request(method, url, body: body, headers: [
            "Content-Type": type, TestCaller.header: TestCaller.assertion(method: method, url: url, body: Array(body ?? Data()), subject: subject, roles: roles),
        ])
        return (response.status, (try? JSONParser().parse(Array(response.body))) ?? .string(response.text))
    }

    func ndjson(_ records: [JSONValue]) -> Data {
        var body = Data()
        for record in records { body.append(contentsOf: record.serializedBytes + [UInt8(ascii: "\n")]) }
        return body
    }

    /// A deterministic stream of digits.
    struct Digits {
        var state: UInt64
        mutating func next(_ count: Int) -> String {
            var text = ""
            for _ in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                text += String((state >> 33) % 10)
            }
            return text
        }
    }

    /// `digits` with a Luhn check digit appended.
    static func luhn(_ digits: String) -> String {
        var sum = 0
        for (position, character) in digits.reversed().enumerated() {
            var value = Int(String(character))!
            if position % 2 == 0 { value *= 2; if value > 9 { value -= 9 } }
            sum += value
        }
        return digits + String((10 - sum % 10) % 10)
    }

    /// Ids that look like phone and card numbers, and UUIDs whose first groups are digits, are
    /// loaded exactly as sent; coordinates, prices and measurements in a CSV are stored as sent,
    /// none quarantined (finding 13: the masker starred them before).
    @Test func identifiersAndMeasurementsAreStoredAsSent() async throws {
        try await PipelineFixture.with(db: 44, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            var digits = Digits(state: 31)
            // Events: 90 ids, a third phone-like, a third card-like (Luhn-valid), a third UUIDs.
            let now = ISO8601DateFormatter().string(from: Date())
            var ids: [String] = []
            for n in 0..<90 {
                switch n % 3 {
                case 0: ids.append("555-\(200 + n)-\(digits.next(4))")
                case 1:
                    let card = Self.luhn("4" + digits.next(14))
                    ids.append(stride(from: 0, to: 16, by: 4).map { String(card.dropFirst($0).prefix(4)) }.joined(separator: "-"))
                default: ids.append("\(digits.next(8))-\(digits.next(4))-\(digits.next(4))-fdfb-1208d52c\(digits.next(4))")
                }
            }
            let events: [JSONValue] = ids.map { id in
                ["metadata": ["event_id": .string(id), "timestamp": .string(now)], "user": ["id": "u-ids"], "payload": ["event_type": "click"]]
            }
            let upload = try await fixture.upload(bytes: ndjson(events), contentType: "application/x-ndjson")
            let job = try await fixture.waitForJob(try #require(upload.body["job_id"]?.stringValue))
            #expect(job.count("loaded") == 90, "\(job.serializedString)")
            let stored = try await fixture.clients.postgres.query(
                "SELECT event_id FROM events WHERE job_id = \(try #require(upload.body["job_id"]?.stringValue))::uuid").rows.compactMap { $0[0] }
            let sameIDs = Set(stored) == Set(ids)
            #expect(sameIDs, "stored but not sent: \(Set(stored).subtracting(ids).prefix(3))")
            #expect(stored.count == 90)

            // A CSV of places: codes, coordinates, elevations, prices, detected on first upload.
            var csv = "ident,name,latitude,longitude,elevation_ft,fee\n"
            var sent: [[String]] = []
            for n in 0..<300 {
                let ident = "\(digits.next(8))-\(digits.next(4))-8133-fdfb-\(digits.next(12))"
                let latitude = "\(n % 2 == 0 ? "" : "-")\(10 + n % 70).\(digits.next(8))"
                let longitude = "-\(100 + n % 80).\(digits.next(7))"
                let elevation = String(Int(digits.next(4))!)
                let fee = "\(Int(digits.next(4))!).\(digits.next(6))"
                sent.append([ident, latitude, longitude, elevation, fee])
                csv += "\(ident),Field \(n),\(latitude),\(longitude),\(elevation),\(fee)\n"
            }
            let places = try await call(fixture, "POST", "ingest", "/api/v1/datasets/places/ingest?key=ident", body: Data(csv.utf8), type: "text/csv")
            #expect(places.status == 202, "\(places.body)")
            let placesJob = try await fixture.waitForJob(try #require(places.body["job_id"]?.stringValue))
            #expect(placesJob.count("loaded") == 300, "\(placesJob.serializedString)")
            #expect(placesJob.count("quarantined") == 0, "\(placesJob.serializedString)")
            let rows = try await fixture.clients.postgres.query(
                "SELECT ident, latitude::text, longitude::text, elevation_ft::text, fee::text FROM datasets.places").rows
            // Numbers compared as numbers (PostgreSQL writes 10.8956522 for 10.89565220).
            func normal(_ row: [String]) -> [String] { [row[0]] + row.dropFirst().map { Double($0).map { "\($0)" } ?? "not a number: \($0)" } }
            let loaded = Set(rows.map { normal($0.map { $0 ?? "" }) }), expected = Set(sent.map(normal))
            let same = loaded == expected
            #expect(same, "stored but not sent: \(loaded.subtracting(expected).prefix(3)); sent but not stored: \(expected.subtracting(loaded).prefix(3))")
        }
    }

    /// A record replaced through the API is masked by its dataset's rules (subject and personal
    /// fields as pseudonyms), so erasing the subject finds and removes it (finding 1).
    @Test func aRecordWrittenThroughTheAPIIsMaskedByItsDatasetAndErased() async throws {
        try await PipelineFixture.with(db: 44, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            try await fixture.start("warehouse")
            try await fixture.start("privacy")
            let spec: JSONValue = [
                "name": "visits", "key": "visit_id", "subject": "visitor",
                "fields": [
                    ["name": "visit_id", "type": "string", "required": true], ["name": "visitor", "type": "string", "required": true],
                    ["name": "contact", "type": "string", "pii": true], ["name": "page", "type": "string"],
                ],
            ]
            #expect(try await call(fixture, "POST", "ingest", "/api/v1/datasets", body: Data(spec.serializedBytes)).status == 201)
            let upload = try await call(fixture, "POST", "ingest", "/api/v1/datasets/visits/ingest",
                                        body: ndjson([["visit_id": "v-1", "visitor": "alice", "page": "/a"]]), type: "application/x-ndjson")
            #expect(try await fixture.waitForJob(try #require(upload.body["job_id"]?.stringValue)).count("loaded") == 1)
            let put = try await call(fixture, "PUT", "warehouse", "/api/v1/datasets/visits/records/v-1",
                                     body: Data(#"{"visitor": "bob", "contact": "bob@example.com", "page": "/b"}"#.utf8))
            #expect(put.status == 200, "\(put.body)")
            let bob = Self.pseudonyms.pseudonymousUserID("bob")
            let row = try await fixture.clients.postgres.query("SELECT visitor, contact, page FROM datasets.visits WHERE visit_id = 'v-1'").rows
            #expect(row == [[bob, Self.pseudonyms.pseudonymousUserID("bob@example.com"), "/b"]])
            let erased = try await call(fixture, "DELETE", "privacy", "/api/v1/subjects/bob")
            #expect(erased.status == 200, "\(erased.body)")
            #expect(erased.body["removed"]?["datasets"]?["visits"] == 1, "\(erased.body)")
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM datasets.visits").scalar == "0")
        }
    }

    /// A chain names only steps, once, starting with masking; the API names no table and sets
    /// no `unmasked`; a dataset from a file keeps its chain and privacy settings (findings 5, 6).
    @Test func chainsTablesAndFileSettingsAreTheOperators() async throws {
        try await PipelineFixture.with(db: 44, manifests: try Self.manifests()) { fixture in
            try await fixture.start("ingest")
            func spec(_ name: String, _ extra: [(String, JSONValue)]) -> Data {
                var object: JSONObject = ["name": .string(name), "key": "id", "fields": [["name": "id", "type": "string", "required": true]]]
                for (key, value) in extra { object[key] = value }
                return Data(JSONValue.object(object).serializedBytes)
            }
            let refused: [(Data, String)] = [
                (spec("a", [("chain", ["validate", "jobs", "load"])]), "chain[1]"),
                (spec("b", [("chain", ["validate", "notify", "load"])]), "chain[1]"),
                (spec("c", [("chain", ["enrich", "transform", "load"])]), "chain[0]"),
                (spec("d", [("chain", ["validate", "enrich", "validate", "load"])]), "chain[2]"),
                (spec("e", [("table", "public.events")]), "table"),
                (spec("f", [("table", "jobs")]), "table"),
                (spec("g", [("unmasked", true), ("chain", ["enrich", "load"])]), "unmasked"),
            ]
            for (body, key) in refused {
                let answer = try await call(fixture, "POST", "ingest", "/api/v1/datasets", body: body)
                #expect(answer.status == 422, "\(key): \(answer.body)")
                #expect(answer.body["code"]?.stringValue == "dataset_invalid", "\(key)")
                #expect(answer.body["key"]?.stringValue == key, "\(answer.body)")
            }
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM dataset_specs").scalar == "1")
            // events' chain and privacy settings change only in its file.
            let text = try #require(try await fixture.clients.postgres.query("SELECT spec::text FROM dataset_specs WHERE name = 'events'").scalar)
            let events = try JSONParser().parse(Array(text.utf8))
            var shorter = events
            shorter.setValue(["validate", "transform", "enrich", "load"], atPath: "chain")
            var unprotected = events
            if case .array(var fields)? = events["fields"] {
                for index in fields.indices where fields[index]["name"] == "user.id" { fields[index].setValue(nil, atPath: "pii") }
                unprotected.setValue(.array(fields), atPath: "fields")
            }
            for (changed, key) in [(shorter, "chain"), (unprotected, "fields")] {
                let answer = try await call(fixture, "PUT", "ingest", "/api/v1/datasets/events", body: Data(changed.serializedBytes))
                #expect(answer.status == 422, "\(key): \(answer.body)")
                #expect(answer.body["key"]?.stringValue == key, "\(answer.body)")
            }
            #expect(try await fixture.clients.postgres.query("SELECT spec::text FROM dataset_specs WHERE name = 'events'").scalar == text)
        }
    }

    /// Profiles show stored values only to callers who may read records; the list leaves out a
    /// dataset restricted to roles the caller lacks; records and the spec change only by the
    /// dataset's owner, admin or a role its spec names in `writers`; first uploads racing to
    /// create one dataset never merge their specs; the catalog holds at most `max_datasets`
    /// (findings 7, 8, 12).
    @Test func profilesListsOwnersRacesAndLimits() async throws {
        try await PipelineFixture.with(db: 44, manifests: try Self.manifests()) { fixture in
            try await fixture.startPipeline()
            try await fixture.start("warehouse")
            let alice = (subject: "alice", roles: ["ingest", "creator"])
            let notes: JSONValue = [
                "name": "notes", "key": "note_id",
                "fields": [["name": "note_id", "type": "string", "required": true], ["name": "score", "type": "number"], ["name": "tag", "type": "string"]],
            ]
            let created = try await call(fixture, "POST", "ingest", "/api/v1/datasets", body: Data(notes.serializedBytes), subject: alice.subject, roles: alice.roles)
            #expect(created.status == 201, "\(created.body)")
            let records: [JSONValue] = (1...3).map { ["note_id": .string("n-\($0)"), "score": .int(Int64($0)), "tag": .string("t\($0)")] }
            let upload = try await call(fixture, "POST", "ingest", "/api/v1/datasets/notes/ingest", body: ndjson(records), type: "application/x-ndjson",
                                        subject: alice.subject, roles: alice.roles)
            #expect(try await fixture.waitForJob(try #require(upload.body["job_id"]?.stringValue)).count("loaded") == 3)

            // The profile: counts and types for an uploader, values for a reader.
            let counted = try await call(fixture, "GET", "warehouse", "/api/v1/datasets/notes", roles: ["ingest"])
            #expect(counted.status == 200, "\(counted.body)")
            #expect(counted.body["profile_rows"] == 3)
            for column in counted.body["profile"]?.arrayValue ?? [] {
                #expect(column["min"] == .null && column["max"] == .null && column["top"] == [], "\(column)")
                #expect(column["nulls"] == 0 && column["distinct"] == 3, "\(column)")
            }
            let read = try await call(fixture, "GET", "warehouse", "/api/v1/datasets/notes", roles: ["analyst"])
            let score = read.body["profile"]?.arrayValue?.first { $0["column"] == "score" }
            #expect(score?["min"] == "1" && score?["max"] == "3", "\(read.body)")

            // Records change by the owner, admin or a writer only.
            let path = "/api/v1/datasets/notes/records/n-1"
            let change = Data(#"{"score": 9, "tag": "x"}"#.utf8)
            let bob = try await call(fixture, "PUT", "warehouse", path, body: change, subject: "bob", roles: ["ingest"])
            #expect(bob.status == 403 && bob.body["code"] == "forbidden", "\(bob.body)")
            #expect(try await call(fixture, "DELETE", "warehouse", path, subject: "bob", roles: ["ingest"]).status == 403)
            #expect(try await call(fixture, "PUT", "warehouse", path, body: change, subject: alice.subject, roles: ["ingest"]).status == 200)
            #expect(try await call(fixture, "PUT", "warehouse", path, body: change, subject: "root", roles: ["admin"]).status == 200)
            // The spec too; the owner names writers, who may then change records.
            var granted = notes
            granted.setValue(["editors"], atPath: "writers")
            let bobSpec = try await call(fixture, "PUT", "ingest", "/api/v1/datasets/notes", body: Data(granted.serializedBytes),
                                         subject: "bob", roles: ["ingest", "creator"])
            #expect(bobSpec.status == 403, "\(bobSpec.body)")
            let aliceSpec = try await call(fixture, "PUT", "ingest", "/api/v1/datasets/notes", body: Data(granted.serializedBytes),
                                           subject: alice.subject, roles: alice.roles)
            #expect(aliceSpec.status == 200, "\(aliceSpec.body)")
            try await Task.sleep(for: .seconds(6))  // the warehouse's cached spec (5 s) learns the writers
            #expect(try await call(fixture, "PUT", "warehouse", path, body: change, subject: "carol", roles: ["ingest", "editors"]).status == 200)
            #expect(try await fixture.clients.postgres.query("SELECT score::text, tag FROM datasets.notes WHERE note_id = 'n-1'").rows == [["9", "x"]])

            // A restricted dataset is left out of the list, and its profile refused, for others.
            let vault: JSONValue = ["name": "vault", "key": "id", "fields": [["name": "id", "type": "string", "required": true]]]
            #expect(try await call(fixture, "POST", "ingest", "/api/v1/datasets", body: Data(vault.serializedBytes)).status == 201)
            func listed(_ roles: [String]) async throws -> [String] {
                try await call(fixture, "GET", "warehouse", "/api/v1/datasets", roles: roles).body["datasets"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
            }
            #expect(try await listed(["analyst"]) == ["events", "notes"])
            #expect(try await listed(["analyst", "vault_reader"]) == ["events", "notes", "vault"])
            #expect(try await listed(["admin"]) == ["events", "notes", "vault"])
            #expect(try await call(fixture, "GET", "warehouse", "/api/v1/datasets/vault", roles: ["analyst"]).status == 404)

            // First uploads racing to create one dataset: one creates, the other uses it, never a merged spec.
            for round in 0..<3 {
                let name = "raced\(round)"
                async let first = call(fixture, "POST", "ingest", "/api/v1/datasets/\(name)/ingest",
                                       body: ndjson((0..<50).map { ["id": .string("a-\($0)"), "alpha": .int(Int64($0))] }), type: "application/x-ndjson")
                async let second = call(fixture, "POST", "ingest", "/api/v1/datasets/\(name)/ingest",
                                        body: ndjson((0..<50).map { ["id": .string("b-\($0)"), "beta": .string("b")] }), type: "application/x-ndjson")
                let (one, two) = try await (first, second)
                #expect(one.status == 202 && two.status == 202, "\(one.body) \(two.body)")
                let stored = try #require(try await fixture.clients.postgres.query("SELECT spec::text FROM dataset_specs WHERE name = \(name)").scalar)
                let fields = Set((try JSONParser().parse(Array(stored.utf8))["fields"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
                #expect(fields == ["id", "alpha"] || fields == ["id", "beta"], "\(name): \(fields)")
            }

            // The catalog holds at most max_datasets (12): events, notes, vault, raced0-2 and six more.
            for n in 0..<6 {
                let more: JSONValue = ["name": .string("more\(n)"), "key": "id", "fields": [["name": "id", "type": "string", "required": true]]]
                #expect(try await call(fixture, "POST", "ingest", "/api/v1/datasets", body: Data(more.serializedBytes)).status == 201)
            }
            let full: JSONValue = ["name": "onemore", "key": "id", "fields": [["name": "id", "type": "string", "required": true]]]
            let refused = try await call(fixture, "POST", "ingest", "/api/v1/datasets", body: Data(full.serializedBytes))
            #expect(refused.status == 409 && refused.body["code"] == "dataset_limit_reached", "\(refused.body)")
            let detected = try await call(fixture, "POST", "ingest", "/api/v1/datasets/onemore/ingest", body: ndjson([["id": "x"]]), type: "application/x-ndjson")
            #expect(detected.status == 409 && detected.body["code"] == "dataset_limit_reached", "\(detected.body)")
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM dataset_specs").scalar == "12")
        }
    }
}
