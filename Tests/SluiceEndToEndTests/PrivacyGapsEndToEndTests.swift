import Foundation
import Sluice
import SluicePrivacy
import SluiceRedis
import Testing

/// The holes the audit found in masking and erasure (issue 19), closed: every form of personal
/// data is masked before anything stores it, erasure deletes by equality on the pseudonym, and
/// an erased subject's events still on their way are not stored. Every request goes through
/// the gateway with a real token.
extension PrivacyEndToEndTests {
    /// Requests through the gateway with one token of every role these tests need.
    struct Caller {
        let fixture: PipelineFixture
        let token: String

        static func make(_ fixture: PipelineFixture) async throws -> Caller {
            Caller(fixture: fixture, token: try await GatewayEndToEndTests.cliToken(fixture, subject: "privacy-e2e", roles: "ingest,admin,analyst"))
        }

        func request(_ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json") async throws -> HTTP.Response {
            var headers = ["Authorization": "Bearer \(token)"]
            if body != nil { headers["Content-Type"] = contentType }
            return try await HTTP.request(method, fixture.url("gateway", path), body: body, headers: headers)
        }

        /// Uploads `body`; answers the job id.
        func upload(_ body: String, contentType: String = "application/x-ndjson") async throws -> String {
            let answer = try await request("POST", "/api/v1/ingest", body: Data(body.utf8), contentType: contentType)
            guard answer.status == 202, let id = PrivacyEndToEndTests.json(answer)["job_id"]?.stringValue else {
                throw TestSetupError("upload answered \(answer.status): \(answer.text)")
            }
            return id
        }

        /// Polls the job through the gateway until it ends.
        func waitForJob(_ id: String, timeout: Duration = .seconds(120)) async throws -> JSONValue {
            let deadline = ContinuousClock.now + timeout
            var last: JSONValue = .null
            while ContinuousClock.now < deadline {
                let answer = try await request("GET", "/api/v1/jobs/\(id)")
                if answer.status == 200 {
                    last = PrivacyEndToEndTests.json(answer)
                    if let status = last["status"]?.stringValue, ["completed", "failed", "cancelled"].contains(status) { return last }
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw TestSetupError("job \(id) did not end within \(timeout): \(last.serializedString)")
        }

        /// Erases `subject` (percent-encoded in the path); answers the report.
        func erase(_ subject: String) async throws -> JSONValue {
            var allowed = CharacterSet.urlPathAllowed
            allowed.remove("/")
            let path = subject.addingPercentEncoding(withAllowedCharacters: allowed) ?? subject
            let answer = try await request("DELETE", "/api/v1/subjects/\(path)")
            #expect(answer.status == 200, "erasing \(subject): \(answer.text)")
            return PrivacyEndToEndTests.json(answer)
        }
    }

    /// One event of the built-in shape as an NDJSON line: `user` is the user id as given (a
    /// number stays a number), `ageSeconds` how long ago it happened (negative: in the future).
    static func line(_ id: String, user: JSONValue, ageSeconds: Double = 0, properties: JSONValue = [:]) -> String {
        let time = ISO8601DateFormatter().string(from: Date().addingTimeInterval(-ageSeconds))
        let event: JSONValue = [
            "metadata": ["event_id": .string(id), "timestamp": .string(time), "version": "1", "source": "e2e"],
            "user": ["id": user], "context": ["location": ["country": "US"]],
            "payload": ["event_type": "click", "properties": properties],
        ]
        return event.serializedString
    }

    static let pseudonyms = PIIMasker(operators: [:], key: Array(PipelineFixture.pseudonymKey.utf8))

    /// The sum of the job's final counts equals what it received.
    static func expectAccounted(_ job: JSONValue, sourceLocation: SourceLocation = #_sourceLocation) {
        let settled = ["loaded", "quarantined", "stale", "duplicate", "no_consent", "geo_restricted", "dropped", "failed", "cancelled"]
        #expect(settled.map { max(0, job.count($0)) }.reduce(0, +) == job.count("received"), "\(job.serializedString)",
                sourceLocation: sourceLocation)
    }

    /// A card and a phone number as JSON numbers, an address as an object key, a numeric user
    /// id, a CSV whose first data row became its header, a `PUT /api/v1/data/{id}` with an
    /// address, and chunks validate dead-lettered (one it could decode, one it could not): none
    /// of the raw forms is in a pg_dump of the database, in validate's dead letters or in any
    /// process's log (at debug level), while their masked forms are.
    @Test func everyFormOfPersonalDataIsMaskedBeforeItIsStored() async throws {
        try await Self.with(db: 8, overrides: ["validate": [("max_attempts: 5", "max_attempts: 1")]],
                            environment: ["SLUICE_LOG_LEVEL": "debug"]) { fixture in
            let caller = try await Caller.make(fixture)
            let postgres = fixture.clients.postgres, redis = fixture.clients.redis
            var raw: [String] = []

            // Numbers, a key, a numeric user id.
            let numeric = try await caller.upload([
                Self.line("num-1", user: 73194285, properties: [
                    "cc": 4111111111111111, "tel": 14155552671, "contacts": ["bob.number@example.com": 1], "n": 1733000000000,
                ]),
                Self.line("put-1", user: "u-put"),
            ].joined(separator: "\n"))
            raw += ["4111111111111111", "14155552671", "bob.number@example.com", "73194285"]
            let numericJob = try await caller.waitForJob(numeric)
            #expect(numericJob.count("loaded") == 2, "\(numericJob.serializedString)")
            let stored = try await postgres.query("SELECT user_id, properties::text FROM events WHERE event_id = 'num-1'")
            #expect(stored.rows.first?[0] == Self.pseudonyms.pseudonymousUserID("73194285"), "the number's decimal form, pseudonymised")
            let properties = try JSONParser().parse(stored.rows.first?[1] ?? "null")
            #expect(properties["cc"] == "************1111")
            #expect(properties["tel"] == "*******2671")
            #expect(properties["n"] == 1733000000000, "a timestamp in milliseconds stays a number")
            #expect(properties["contacts"]?.objectValue?.keys.first?.hasPrefix("<EMAIL:") == true, "\(properties.serializedString)")

            // A CSV without a header row: its first data row is taken as the header.
            let now = ISO8601DateFormatter().string(from: Date())
            let csv = try await caller.upload("csv-1,\(now),u-csv,click,carol.header@example.com\r\ncsv-2,\(now),u-csv,click,x\r\n",
                                              contentType: "text/csv")
            raw += ["carol.header@example.com", "carol.header", "header@example"]
            let csvJob = try await caller.waitForJob(csv)
            #expect(csvJob.count("received") == 1 && csvJob.count("quarantined") == 1, "\(csvJob.serializedString)")
            let schema = try await postgres.query("SELECT schema::text FROM jobs WHERE id = \(csv)::uuid").scalar ?? ""
            #expect(schema.contains(#""name": "<EMAIL>""#) || schema.contains(#""name":"<EMAIL>""#), "\(schema)")
            #expect(csvJob["schema"]?.arrayValue?.compactMap { $0["name"]?.stringValue }.contains("<EMAIL>") == true)

            // PUT through the same masking as the pipeline.
            let put = try await caller.request("PUT", "/api/v1/data/put-1", body: Data("""
                {"event_type": "click", "user_id": "carol@example.com",
                 "properties": {"note": "write to carol@example.com", "card": 4111111111111111, "carol@example.com": true}}
                """.utf8))
            raw += ["carol@example.com"]
            #expect(put.status == 200, "\(put.text)")
            let replaced = Self.json(put)
            #expect(replaced["user_id"]?.stringValue == Self.pseudonyms.pseudonymousUserID("carol@example.com"))
            #expect(replaced["properties"]?["card"] == "************1111")
            #expect(replaced["properties"]?["note"]?.stringValue?.hasPrefix("write to <EMAIL:") == true)
            #expect(try await postgres.query("SELECT user_id FROM events WHERE event_id = 'put-1'").scalar
                    == Self.pseudonyms.pseudonymousUserID("carol@example.com"))

            // A chunk validate fails after pii-mask (its consent lookup finds no table) is
            // dead-lettered masked; one it cannot decode keeps no events at all.
            let deadLetters = fixture.keys.deadLetters("validate")
            let hide = try await runCommand("/usr/bin/psql", [fixture.databaseURL, "-v", "ON_ERROR_STOP=1", "-c", "ALTER TABLE consents RENAME TO consents_away"])
            #expect(hide.status == 0, "\(hide.error)")
            let failing = try await caller.upload(Self.line("dl-1", user: "u-deadletter", properties: [
                "mail": "dead.letter@example.com", "cc": 5555555555554444,
            ]))
            raw += ["dead.letter@example.com", "5555555555554444"]
            let deadline = ContinuousClock.now + .seconds(60)
            while try await redis.send(["XLEN", RedisArgument(deadLetters)]).int ?? 0 < 1, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            let restore = try await runCommand("/usr/bin/psql", [fixture.databaseURL, "-v", "ON_ERROR_STOP=1", "-c", "ALTER TABLE consents_away RENAME TO consents"])
            #expect(restore.status == 0, "\(restore.error)")
            let failedJob = try await caller.waitForJob(failing)
            #expect(failedJob.count("failed") == 1 && failedJob.count("received") == 1, "\(failedJob.serializedString)")
            let undecodable: JSONValue = [["metadata": ["event_id": "dl-raw"], "user": ["id": "u-raw"],
                                           "payload": ["mail": "dead.raw@example.com", "cc": 378282246310005]]]
            raw += ["dead.raw@example.com", "378282246310005"]
            _ = try await redis.send(["XADD", RedisArgument(fixture.keys.stream("validate")), "*", "v", "1", "n", "2",
                                      "events", RedisArgument(undecodable.serializedString)])
            while try await redis.send(["XLEN", RedisArgument(deadLetters)]).int ?? 0 < 2, ContinuousClock.now < deadline + .seconds(30) {
                try await Task.sleep(for: .milliseconds(100))
            }
            let letters = try await redis.range(stream: deadLetters)
            #expect(letters.count == 2)
            let masked = try #require(letters.first { $0.field("job") == failing })
            #expect(masked.field("error_code") == "consents_unavailable")
            let chunk = try ChunkCodec.decode(id: masked.id, fields: masked.fields)
            #expect(chunk.events.count == 1)
            #expect(chunk.events.first?.value["user"]?["id"]?.stringValue == Self.pseudonyms.pseudonymousUserID("u-deadletter"))
            #expect(chunk.events.first?.value["payload"]?["properties"]?["cc"] == "************4444")
            #expect(chunk.events.first?.value["payload"]?["properties"]?["mail"]?.stringValue?.hasPrefix("<EMAIL:") == true)
            let withheld = try #require(letters.first { $0.field("job") == nil })
            #expect(withheld.field("error_code") == "chunk_count_mismatch")
            #expect(withheld.field("payload") == "withheld" && withheld.field("events") == nil)
            let letterText = letters.flatMap { $0.fields.map { "\($0.0)=\(String(decoding: $0.1, as: UTF8.self))" } }.joined(separator: "\n")
            #expect(PipelineEndToEndTests.occurring(raw, in: letterText).isEmpty, "in the dead letters: \(PipelineEndToEndTests.occurring(raw, in: letterText))")
            try await fixture.waitUntilDrained()

            // Positive control: every raw form was sent.
            let sent = [Self.line("x", user: 73194285, properties: ["cc": 4111111111111111, "tel": 14155552671, "contacts": ["bob.number@example.com": 1]]),
                        "carol.header@example.com", "carol@example.com", "dead.letter@example.com 5555555555554444",
                        undecodable.serializedString].joined(separator: "\n")
            #expect(PipelineEndToEndTests.occurring(raw, in: sent).count == raw.count)

            let dump = try await runCommand("/usr/bin/pg_dump", [fixture.databaseURL], timeout: .seconds(120))
            #expect(dump.status == 0, "\(dump.error)")
            #expect(dump.output.contains("************1111") && dump.output.contains("*******2671") && dump.output.contains("<EMAIL:")
                    && dump.output.contains("<EMAIL>"), "the dump holds the masked forms")
            #expect(PipelineEndToEndTests.occurring(raw, in: dump.output).isEmpty, "in the database: \(PipelineEndToEndTests.occurring(raw, in: dump.output))")

            let logs = fixture.processes.values.map(\.log).joined(separator: "\n")
            #expect(logs.contains("chunk dead-lettered") && logs.contains("chunk acknowledged"), "positive control: the debug logs were captured")
            #expect(PipelineEndToEndTests.occurring(raw, in: logs).isEmpty, "in the logs: \(PipelineEndToEndTests.occurring(raw, in: logs))")
        }
    }

    /// Erasure deletes by equality on the pseudonym: erasing `:`, `%` or `_` removes nothing of
    /// anyone else (exact counts before and after), and erasing a subject removes exactly its
    /// warehouse and quarantine rows, those of CSV uploads included.
    @Test func erasingMatchesOnlyItsOwnSubject() async throws {
        try await Self.with(db: 9) { fixture in
            let caller = try await Caller.make(fixture)
            let postgres = fixture.clients.postgres
            // Loaded and quarantined (an hour in the future) events of subjects whose ids hold the
            // characters of LIKE patterns and of JSON text.
            var lines: [String] = []
            let subjects: [(id: String, loaded: Int, quarantined: Int)] = [("x:y", 2, 1), ("50%", 2, 1), ("a_b", 1, 1), ("u-keep", 3, 1)]
            for subject in subjects {
                for i in 0..<subject.loaded { lines.append(Self.line("\(subject.id)-\(i)", user: .string(subject.id))) }
                for i in 0..<subject.quarantined { lines.append(Self.line("\(subject.id)-q\(i)", user: .string(subject.id), ageSeconds: -3600)) }
            }
            lines.append(#"{"user": {"id": "x:y"}, "broken"#)  // does not parse: quarantined raw, with no subject
            let ndjson = try await caller.waitForJob(try await caller.upload(lines.joined(separator: "\n")))
            #expect(ndjson.count("loaded") == 8 && ndjson.count("quarantined") == 5, "\(ndjson.serializedString)")
            let now = ISO8601DateFormatter().string(from: Date()), later = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
            let csv = try await caller.waitForJob(try await caller.upload("""
                event_id,timestamp,user_id,event_type\r
                csv-1,\(now),csv:user,click\r
                csv-2,\(now),csv:user,view\r
                csv-3,\(later),csv:user,view\r

                """, contentType: "text/csv"))
            #expect(csv.count("loaded") == 2 && csv.count("quarantined") == 1, "\(csv.serializedString)")
            try await fixture.waitUntilDrained()

            func totals() async throws -> (events: Int, quarantine: Int) {
                let row = try await postgres.query("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM quarantine)").rows[0]
                return (Int(row[0] ?? "") ?? -1, Int(row[1] ?? "") ?? -1)
            }
            let before = try await totals()
            #expect(before.events == 10 && before.quarantine == 6)
            #expect(try await postgres.query("SELECT count(*) FROM quarantine WHERE subject IS NULL").scalar == "1", "only the record that did not parse")

            for pattern in [":", "%", "_", "\"", "u_"] {
                let report = try await caller.erase(pattern)
                #expect(report["subject"]?.stringValue == Self.pseudonyms.pseudonymousUserID(pattern), "\(pattern): \(report.serializedString)")
                #expect(report["removed"] == ["events": 0, "quarantine": 0, "async_calls": 0, "datasets": ["events": 0]], "\(pattern): \(report.serializedString)")
                let after = try await totals()
                #expect(after.events == before.events && after.quarantine == before.quarantine, "erasing \(pattern) removed rows of others")
            }

            var remaining = before
            for subject in subjects.filter({ $0.id != "u-keep" }) + [("csv:user", 2, 1)] {
                let pseudonym = Self.pseudonyms.pseudonymousUserID(subject.id)
                let report = try await caller.erase(subject.id)
                #expect(report["subject"]?.stringValue == pseudonym)
                #expect(report["removed"] == ["events": .int(Int64(subject.loaded)), "quarantine": .int(Int64(subject.quarantined)), "async_calls": 0,
                                              "datasets": ["events": .int(Int64(subject.loaded))]],
                        "\(subject.id): \(report.serializedString)")
                remaining = (remaining.events - subject.loaded, remaining.quarantine - subject.quarantined)
                let after = try await totals()
                #expect(after.events == remaining.events && after.quarantine == remaining.quarantine, "\(subject.id)")
                #expect(try await postgres.query("SELECT count(*) FROM events WHERE user_id = \(pseudonym)").scalar == "0")
                #expect(try await postgres.query("SELECT count(*) FROM quarantine WHERE subject = \(pseudonym)").scalar == "0")
            }
            #expect(remaining.events == 3 && remaining.quarantine == 2, "u-keep's three events and quarantined one, and the raw record")
            let kept = try await postgres.query("SELECT count(*) FROM events WHERE user_id = \(Self.pseudonyms.pseudonymousUserID("u-keep"))")
            #expect(kept.scalar == "3")
            #expect(try await postgres.query("SELECT count(*) FROM erasures").scalar == "9", "five patterns and four subjects")
        }
    }

    /// An erased subject's events that are past validate when the subject is erased are neither
    /// loaded nor quarantined: load and quarantine are stopped while the events wait in their
    /// streams, the subject is erased, and once they run again they drop the events as
    /// `no_consent`; the job's counts add up. A consent granted after the erasure lets later
    /// events through.
    @Test func anErasedSubjectsEventsInFlightAreNotStored() async throws {
        try await Self.with(db: 9) { fixture in
            let caller = try await Caller.make(fixture)
            let postgres = fixture.clients.postgres
            let flight = Self.pseudonyms.pseudonymousUserID("u-flight"), stay = Self.pseudonyms.pseudonymousUserID("u-stay")
            for name in ["load", "quarantine"] { await fixture.processes[name]?.stop() }
            let id = try await caller.upload([
                Self.line("f-1", user: "u-flight"), Self.line("f-2", user: "u-flight"), Self.line("f-3", user: "u-flight"),
                Self.line("f-q", user: "u-flight", ageSeconds: -3600),
                Self.line("s-1", user: "u-stay"), Self.line("s-2", user: "u-stay"),
            ].joined(separator: "\n"))
            // Wait until the events wait for load (5) and quarantine (1).
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let forwarded = try await fixture.counter("fn.transform.forwarded", jobs: [id])
                let quarantined = try await fixture.counter("fn.validate.in", jobs: [id]) - (try await fixture.counter("fn.validate.forwarded", jobs: [id]))
                if forwarded == 5 && quarantined == 1 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await fixture.counter("fn.transform.forwarded", jobs: [id]) == 5)
            let loadBacklog = try await fixture.backlog("load"), quarantineBacklog = try await fixture.backlog("quarantine")
            #expect(loadBacklog > 0 && quarantineBacklog > 0)

            let report = try await caller.erase("u-flight")
            #expect(report["removed"] == ["events": 0, "quarantine": 0, "async_calls": 0, "datasets": ["events": 0]], "\(report.serializedString)")
            try await fixture.start("load")
            try await fixture.start("quarantine")
            let job = try await caller.waitForJob(id)
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("received") == 6)
            #expect(job.count("loaded") == 2)
            #expect(job.count("no_consent") == 4, "three fenced by load, one by quarantine: \(job.serializedString)")
            #expect(job.count("quarantined") == 0)
            Self.expectAccounted(job)
            #expect(try await postgres.query("SELECT count(*) FROM events WHERE user_id = \(flight)").scalar == "0")
            #expect(try await postgres.query("SELECT count(*) FROM quarantine WHERE subject = \(flight)").scalar == "0")
            #expect(try await postgres.query("SELECT count(*) FROM quarantine WHERE job_id = \(id)::uuid").scalar == "0")
            #expect(try await postgres.query("SELECT count(*) FROM events WHERE user_id = \(stay)").scalar == "2")

            // A consent granted after the erasure: the subject's new events are loaded again.
            let grant = try await caller.request("PUT", "/api/v1/consents/u-flight", body: Data(#"{"purpose": "analytics", "granted": true}"#.utf8))
            #expect(grant.status == 200, "\(grant.text)")
            try await Task.sleep(for: .seconds(1))
            let again = try await caller.waitForJob(try await caller.upload(Self.line("f-4", user: "u-flight")))
            #expect(again.count("loaded") == 1, "\(again.serializedString)")
            #expect(try await postgres.query("SELECT event_id FROM events WHERE user_id = \(flight)").scalar == "f-4")
        }
    }
}
