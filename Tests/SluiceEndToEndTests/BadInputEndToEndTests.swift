import Foundation
import Sluice
import Testing

/// Hostile and broken input against the real pipeline (every stage its own process) and the
/// gateway in front of it: the corpus in `Tests/Corpus`, a gigabyte on one line, nesting
/// 10,000 deep, wrong and missing `Content-Type`, empty bodies, huge headers and slow clients.
/// Each is answered 4xx or quarantined; every process stays up with its memory bounded.
@Suite("Bad input end to end", .serialized)
struct BadInputEndToEndTests {
    /// Connections that send nothing usable for this long are closed (`SLUICE_HTTP_IDLE_TIMEOUT`).
    static let idleTimeout = 2

    /// The stages, privacy and a gateway in front of ingest and privacy.
    static func with(_ body: (PipelineFixture) async throws -> Void) async throws {
        let fixture = try await PipelineFixture(db: 16, manifests: try GatewayEndToEndTests.manifests())
        fixture.extraEnvironment = [
            "SLUICE_JWT_ISSUER": GatewayEndToEndTests.issuer, "SLUICE_JWT_AUDIENCE": GatewayEndToEndTests.audience,
            "SLUICE_HTTP_IDLE_TIMEOUT": "\(idleTimeout)s",
        ]
        let result: Result<Void, any Error>
        do {
            try await fixture.startPipeline()
            try await fixture.start("privacy")
            try await fixture.start("gateway", environment: [
                "SLUICE_JWT_SECRET": GatewayEndToEndTests.secret,
                "SLUICE_UPSTREAM_INGEST": fixture.url("ingest", ""), "SLUICE_UPSTREAM_PRIVACY": fixture.url("privacy", ""),
            ])
            result = .success(try await body(fixture))
        } catch {
            result = .failure(error)
        }
        await fixture.stopAll()
        try result.get()
    }

    static func corpus() throws -> String { "\(try TestEnvironment.get().packageRoot)/Tests/Corpus" }

    /// Uploads a file of the corpus with the content type its extension names.
    static func upload(_ file: String, to fixture: PipelineFixture) async throws -> (status: Int, body: JSONValue) {
        let body = try Data(contentsOf: URL(fileURLWithPath: "\(try corpus())/uploads/\(file)"))
        return try await fixture.upload(bytes: body, contentType: contentType(of: file))
    }

    static func contentType(of file: String) -> String {
        switch (file as NSString).pathExtension {
        case "json": "application/json"
        case "ndjson": "application/x-ndjson"
        case "csv": "text/csv"
        case "xml": "application/xml"
        default: "text/plain"
        }
    }

    /// Every process of the fixture still runs and answers `/health/live`.
    static func expectAllAlive(_ fixture: PipelineFixture, _ context: String) async throws {
        for (name, process) in fixture.processes {
            #expect(process.isRunning, "\(name) exited after \(context):\n\(process.tail(20))")
            let live = try? await HTTP.request("GET", fixture.url(name, "/health/live"))
            #expect(live?.status == 200, "\(name) does not answer /health/live after \(context)")
        }
    }

    static func problem(_ response: RawConnection.Response) -> JSONValue {
        (try? JSONParser().parse(response.body)) ?? .string(response.text)
    }

    // MARK: - The corpus

    @Test func corpusBodiesAreRefusedOrAccountedFor() async throws {
        let expectations = try JSONParser().parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(try Self.corpus())/uploads.json"))))
        let refused = try #require(expectations["refused"]?.arrayValue)
        let accepted = try #require(expectations["accepted"]?.arrayValue)
        // Every file of the corpus has an expectation, and every expectation a file.
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: "\(try Self.corpus())/uploads"))
        let named = Set((refused + accepted).compactMap { $0["file"]?.stringValue })
        #expect(files == named, "files without an expectation: \(files.subtracting(named)); expectations without a file: \(named.subtracting(files))")
        #expect(refused.count == 32)

        try await Self.with { fixture in
            var failedJobs: [String] = []
            for item in refused {
                let file = try #require(item["file"]?.stringValue)
                let answer = try await Self.upload(file, to: fixture)
                #expect(answer.status == 400, "\(file): \(answer.body.serializedString)")
                #expect(answer.body["code"]?.stringValue == item["code"]?.stringValue, "\(file): \(answer.body.serializedString)")
                #expect(answer.body["offset"]?.intValue == item["offset"]?.intValue, "\(file): \(answer.body.serializedString)")
                let id = try #require(answer.body["job_id"]?.stringValue, "\(file)")
                let job = try await fixture.job(id)
                #expect(job["status"]?.stringValue == "failed", "\(file)")
                #expect(job["error"]?.stringValue == item["code"]?.stringValue, "\(file)")
                failedJobs.append(id)
            }
            for item in accepted {
                let file = try #require(item["file"]?.stringValue)
                let answer = try await Self.upload(file, to: fixture)
                #expect(answer.status == 202, "\(file): \(answer.body.serializedString)")
                #expect(answer.body["received"]?.intValue == item["received"]?.intValue, "\(file)")
                let id = try #require(answer.body["job_id"]?.stringValue, "\(file)")
                let job = try await fixture.waitForJob(id)
                #expect(job["status"]?.stringValue == "completed", "\(file): \(job.serializedString)")
                for (name, value) in item["counts"]?.objectValue ?? [:] {
                    #expect(job.count(name) == Int(value.intValue ?? -1), "\(file): \(name) in \(job.serializedString)")
                }
                let rows = try await fixture.clients.postgres.query(
                    "SELECT line::text, reason FROM quarantine WHERE job_id = \(id)::uuid ORDER BY quarantine.line")
                let expected = (item["quarantine"]?.arrayValue ?? []).map { pair in
                    [pair.arrayValue?.first?.intValue.map(String.init), pair.arrayValue?.last?.stringValue]
                }
                #expect(rows.rows == expected, "\(file)")
                #expect(try await fixture.warehouseRows(job: id) == 0, "\(file)")
            }
            try await fixture.waitUntilDrained()
            for id in failedJobs { #expect(try await fixture.warehouseRows(job: id) == 0) }
            try await Self.expectAllAlive(fixture, "the corpus")
        }
    }

    // MARK: - Sizes and depths no parser may trust

    @Test func aGigabyteLineAndDeepNestingKeepMemoryBounded() async throws {
        try await Self.with { fixture in
            let ingest = try #require(fixture.processes["ingest"])
            let stale = #"{"metadata":{"event_id":"after-the-gigabyte","timestamp":"2020-01-01T00:00:00Z","version":"1","source":"web"},"user":{"id":"u-1"},"payload":{"event_type":"click"}}"#
            // One line of 10^9 bytes, made as it is sent, then a small event.
            let prefix = Array(#"{"a":""#.utf8), suffix = Array("\"}\n\(stale)\n".utf8)
            let total = 1_000_000_000
            let port = ingest.port
            let gigabyte = try await RawHTTP.run { () throws -> RawConnection.Response in
                let connection = try RawConnection(port: port)
                let head = RawHTTP.request("POST", "/api/v1/ingest", headers: [
                    ("Content-Type", "application/x-ndjson"), ("Content-Length", "\(total)"),
                ])
                guard connection.send(head), connection.send(prefix) else { throw TestSetupError("ingest closed the connection") }
                let filler = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
                var left = total - prefix.count - suffix.count
                while left > 0 {
                    let piece = min(left, filler.count)
                    guard connection.send(Array(filler[..<piece])) else { throw TestSetupError("ingest closed the connection with \(left) bytes left") }
                    left -= piece
                }
                guard connection.send(suffix), let response = connection.readResponse() else { throw TestSetupError("no answer to the gigabyte") }
                return response
            }
            #expect(gigabyte.status == 202, "\(gigabyte.text)")
            let answer = Self.problem(gigabyte)
            #expect(answer["received"]?.intValue == 2)
            let job = try await fixture.waitForJob(try #require(answer["job_id"]?.stringValue))
            #expect(job["status"]?.stringValue == "completed")
            #expect(job.count("quarantined") == 1)
            #expect(job.count("stale") == 1)
            let quarantined = try await fixture.clients.postgres.query(
                "SELECT line::text, reason, length(raw)::text FROM quarantine WHERE job_id = \(try #require(answer["job_id"]?.stringValue))::uuid")
            #expect(quarantined.rows == [["1", "record_too_long", "4096"]])

            // Nesting 10,000 deep in every place JSON or XML is read.
            let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
            let deepXML = String(repeating: "<a>", count: 10_000) + "1" + String(repeating: "</a>", count: 10_000)
            let line = try await fixture.upload(bytes: Data("{\"a\":\(deep)}\n\(stale)\n".utf8), contentType: "application/x-ndjson")
            #expect(line.status == 202)
            let lineJob = try await fixture.waitForJob(try #require(line.body["job_id"]?.stringValue))
            #expect(lineJob.count("quarantined") == 1)
            #expect(try await fixture.quarantineReasons(job: try #require(line.body["job_id"]?.stringValue)) == ["too_deep": 1])
            let array = try await fixture.upload(bytes: Data("[\(deep)]".utf8), contentType: "application/json")
            #expect(array.status == 400)
            #expect(array.body["code"]?.stringValue == "too_deep")
            #expect(array.body["offset"]?.intValue == 65)
            let xml = try await fixture.upload(bytes: Data("<events><event>\(deepXML)</event></events>".utf8), contentType: "application/xml")
            #expect(xml.status == 202)
            let xmlJob = try await fixture.waitForJob(try #require(xml.body["job_id"]?.stringValue))
            #expect(xmlJob.count("quarantined") == 1)
            #expect(try await fixture.quarantineReasons(job: try #require(xml.body["job_id"]?.stringValue)) == ["too_deep": 1])
            for (name, path) in [("ingest", "/api/v1/data"), ("validate", "/invoke")] {
                let response = try await HTTP.request("POST", fixture.url(name, path), body: Data(deep.utf8), headers: ["Content-Type": "application/json"])
                #expect(response.status == 400, "\(name) \(path): \(response.text)")
                let problem = try JSONParser().parse(Array(response.body))
                #expect(problem["code"]?.stringValue == "invalid_json")
                #expect(problem["error"]?.stringValue == "json_too_deep")
            }

            // A gigabyte costs ingest what a small upload does: the line is never held.
            let peak = peakResidentKB(ingest.pid)
            #expect(peak > 0 && peak < 150 * 1024, "ingest peaked at \(peak) kB")
            try await Self.expectAllAlive(fixture, "the gigabyte and the deep bodies")
        }
    }

    // MARK: - Headers and media types

    @Test func wrongMissingOrHugeHeadersAreRefused() async throws {
        try await Self.with { fixture in
            let ingest = fixture.ports["ingest"]!, gateway = fixture.ports["gateway"]!
            let ndjson = Array("{\"a\":1}\n".utf8)
            // An upload must name its format.
            let missing = try await RawHTTP.exchange(port: ingest, RawHTTP.request("POST", "/api/v1/ingest", body: ndjson))
            #expect(missing.status == 415)
            #expect(Self.problem(missing)["code"]?.stringValue == "unsupported_format")
            #expect(missing.headers["content-type"] == "application/problem+json")
            let png = try await RawHTTP.exchange(port: ingest, RawHTTP.request("POST", "/api/v1/ingest", headers: [("Content-Type", "image/png")], body: ndjson))
            #expect(png.status == 415)
            #expect(Self.problem(png)["code"]?.stringValue == "unsupported_format")

            // JSON routes take only JSON, through the gateway as directly.
            let admin = try GatewayEndToEndTests.hs256(GatewayEndToEndTests.claims(subject: "bad-input-admin", roles: ["admin"]))
            let consent = Array(#"{"purpose": "analytics", "granted": false}"#.utf8)
            let auth = ("Authorization", "Bearer \(admin)")
            let cases: [(String, [(String, String)], [UInt8], Int, String?)] = [
                ("no Content-Type", [auth], consent, 415, "unsupported_media_type"),
                ("text/plain", [auth, ("Content-Type", "text/plain")], consent, 415, "unsupported_media_type"),
                ("form", [auth, ("Content-Type", "application/x-www-form-urlencoded")], consent, 415, "unsupported_media_type"),
                ("empty JSON", [auth, ("Content-Type", "application/json")], [], 400, "invalid_json"),
                ("not JSON", [auth, ("Content-Type", "application/json")], Array("purpose=analytics".utf8), 400, "invalid_json"),
                ("JSON with a charset", [auth, ("Content-Type", "application/json; charset=utf-8")], consent, 200, nil),
            ]
            for (name, headers, body, status, code) in cases {
                let response = try await RawHTTP.exchange(port: gateway, RawHTTP.request("PUT", "/api/v1/consents/bad-input-subject", headers: headers, body: body))
                #expect(response.status == status, "\(name): \(response.text)")
                if let code { #expect(Self.problem(response)["code"]?.stringValue == code, "\(name): \(response.text)") }
            }

            // Headers beyond 80 KB, or more than 1,000 of them: 431 headers_too_large; a request
            // that is not HTTP: 400 malformed_request; each a problem, and the connection closed.
            let big = String(repeating: "a", count: 100_000)
            let many = (0..<2_000).map { ("X-Many-\($0)", "v") }
            let requests: [(label: String, bytes: [UInt8], status: Int, code: String)] = [
                ("one 100 KB header", RawHTTP.request("GET", "/health/live", headers: [("X-Big", big)]), 431, "headers_too_large"),
                ("2,000 headers", RawHTTP.request("GET", "/health/live", headers: many), 431, "headers_too_large"),
                ("a request line that is not HTTP", Array("HELLO THERE\r\n\r\n".utf8), 400, "malformed_request"),
                ("a header without a colon", Array("GET /health/live HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".utf8), 400, "malformed_request"),
            ]
            for (name, port) in [("ingest", ingest), ("gateway", gateway)] {
                for request in requests {
                    let (answer, closed) = try await RawHTTP.run { () throws -> (RawConnection.Response?, Bool) in
                        let connection = try RawConnection(port: port, timeout: .seconds(10))
                        connection.send(request.bytes)
                        let answer = connection.readResponse()
                        return (answer, connection.closedByPeer(within: .seconds(5)))
                    }
                    #expect(answer?.status == request.status, "\(name), \(request.label)")
                    #expect(answer?.headers["content-type"] == "application/problem+json", "\(name), \(request.label)")
                    #expect(answer.map { Self.problem($0)["code"]?.stringValue } == request.code, "\(name), \(request.label)")
                    #expect(answer.map { Self.problem($0)["status"]?.intValue } == Int64(request.status), "\(name), \(request.label)")
                    #expect(closed, "\(name) kept the connection open after \(request.label)")
                }
            }

            // `Expect: 100-continue` (curl sends it with every body over 1 MB) is answered at
            // once, before the body, directly and through the gateway; unanswered, curl waits a second.
            let uploader = try GatewayEndToEndTests.hs256(GatewayEndToEndTests.claims(subject: "bad-input-uploader", roles: ["ingest"]))
            let events = Array("{\"metadata\":{\"event_id\":\"expect-1\"}}\n{\"metadata\":{\"event_id\":\"expect-2\"}}\n".utf8)
            for (name, port) in [("ingest", ingest), ("gateway", gateway)] {
                let (interim, final) = try await RawHTTP.run { () throws -> (Int?, RawConnection.Response?) in
                    let connection = try RawConnection(port: port, timeout: .milliseconds(500))
                    let head = RawHTTP.request("POST", "/api/v1/ingest", headers: [
                        ("Content-Type", "application/x-ndjson"), ("Content-Length", "\(events.count)"),
                        ("Expect", "100-continue"), ("Authorization", "Bearer \(uploader)"),
                    ])
                    connection.send(head)
                    let interim = connection.readResponse()?.status
                    connection.setTimeout(.seconds(30))
                    connection.send(events)
                    return (interim, connection.readResponse())
                }
                #expect(interim == 100, "\(name) did not answer 100 Continue within 500 ms")
                #expect(final?.status == 202, "\(name): \(final?.text ?? "no answer")")
                #expect(final.flatMap { try? JSONParser().parse($0.body) }?["received"] == 2, "\(name): \(final?.text ?? "")")
            }
            try await Self.expectAllAlive(fixture, "the headers")
        }
    }

    // MARK: - Slow clients

    @Test func slowClientsAreCutOffAndOthersServed() async throws {
        try await Self.with { fixture in
            let ingest = fixture.ports["ingest"]!, gateway = fixture.ports["gateway"]!
            let limit = Duration.seconds(Self.idleTimeout + 3)
            // Fifty connections on each server that send half a request head and then nothing.
            let held = try await RawHTTP.run { () throws -> [RawConnection] in
                try [ingest, gateway].flatMap { port in
                    try (0..<50).map { _ in
                        let connection = try RawConnection(port: port)
                        connection.send("POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
                        return connection
                    }
                }
            }
            // Others are served meanwhile.
            for name in ["ingest", "gateway"] {
                let live = try await HTTP.request("GET", fixture.url(name, "/health/live"))
                #expect(live.status == 200, "\(name) did not answer while slow clients held connections")
            }
            let closed = try await RawHTTP.run { held.map { $0.closedByPeer(within: limit) } }
            #expect(closed.filter { $0 }.count == 100, "\(closed.filter { !$0 }.count) slow connections were still open after \(limit)")

            // A head dribbled a byte every 300 ms is cut off too: bytes alone do not keep it open.
            for port in [ingest, gateway] {
                let (cut, elapsed) = try await RawHTTP.run { () throws -> (Bool, Duration) in
                    let connection = try RawConnection(port: port)
                    let start = ContinuousClock.now
                    for byte in Array("GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "z"), count: 100) {
                        guard connection.send([byte]) else { return (true, ContinuousClock.now - start) }
                        Thread.sleep(forTimeInterval: 0.3)
                    }
                    return (false, ContinuousClock.now - start)
                }
                #expect(cut, "port \(port) kept a dribbling head open for \(elapsed)")
                #expect(elapsed < limit, "cut after \(elapsed)")
            }

            // An upload that stalls mid-body is cut off; its job fails and loads nothing.
            let stalled = try await RawHTTP.run { () throws -> Bool in
                let connection = try RawConnection(port: ingest)
                connection.send(RawHTTP.request("POST", "/api/v1/ingest", headers: [
                    ("Content-Type", "application/x-ndjson"), ("Content-Length", "100000"),
                ]) + Array("{\"a\":1}\n{\"b\"".utf8))
                return connection.closedByPeer(within: limit)
            }
            #expect(stalled, "ingest kept a stalled upload open")
            var failed: [[String?]] = []
            let deadline = ContinuousClock.now + .seconds(10)
            while failed.isEmpty, ContinuousClock.now < deadline {
                failed = try await fixture.clients.postgres.query("SELECT status, error FROM jobs WHERE error = 'body_incomplete'").rows
                if failed.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(failed == [["failed", "body_incomplete"]])
            #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM events").scalar == "0")
            try await Self.expectAllAlive(fixture, "the slow clients")
        }
    }
}
