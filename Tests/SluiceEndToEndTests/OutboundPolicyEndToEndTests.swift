import Foundation
import Sluice
import SluiceNotify
import SluicePostgres
import Testing

/// The outbound (SSRF) policy against real processes: the gateway in front of ingest and
/// calls, notify on its own, real listeners on the loopback interface that must receive nothing
/// of what Sluice is asked to send them.
@Suite("Outbound policy end to end", .serialized)
struct OutboundPolicyEndToEndTests {
    static let db = 31

    /// A listener process (Tests/tools/outbound_listener.py) and what it received.
    struct Listener {
        let child: Child
        let port: Int
        let log: String

        /// `METHOD path` of every request, in order.
        var requests: [String] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { line in
                guard let value = try? JSONParser().parse(String(line)), let method = value["method"]?.stringValue,
                      let path = value["path"]?.stringValue else { return nil }
                return "\(method) \(path)"
            }
        }

        func stop() {
            kill(child.pid, SIGKILL)
            _ = child.poll()
        }
    }

    static func listen(_ mode: String, addresses: String, in directory: String, location: String = "") async throws -> Listener {
        let root = try TestEnvironment.get().packageRoot
        let port = freePort(), log = "\(directory)/\(mode)-\(port).jsonl"
        let child = try Child("/usr/bin/python3", ["\(root)/Tests/tools/outbound_listener.py", mode, addresses, String(port), log, location],
                              environment: [:], stdout: "\(directory)/\(mode).out", stderr: "\(directory)/\(mode).err")
        let listener = Listener(child: child, port: port, log: log)
        do {
            try await waitForListener(port)
        } catch {
            listener.stop()
            throw error
        }
        return listener
    }

    /// A problem answer's `code` and `reason`.
    static func problem(_ response: HTTP.Response) -> [String?] {
        guard response.headers["content-type"] == "application/problem+json", let body = try? JSONParser().parse(Array(response.body)) else {
            return []
        }
        return [body["code"]?.stringValue, body["reason"]?.stringValue]
    }

    /// Polls `sql` (one row, bound to `id`) until `done` says so; answers the row.
    static func waitFor(_ fixture: PipelineFixture, _ sql: (String) -> PostgresQuery, _ id: String, timeout: Duration = .seconds(60),
                        until done: ([String?]) -> Bool) async throws -> [String?] {
        let deadline = ContinuousClock.now + timeout
        var last: [String?] = []
        while ContinuousClock.now < deadline {
            last = try await fixture.clients.postgres.query(sql(id)).rows.first ?? []
            if !last.isEmpty && done(last) { return last }
            try await Task.sleep(for: .milliseconds(200))
        }
        var report = "\(id) not settled: \(last)"
        for (name, process) in fixture.processes { report += "\n--- \(name)\n\(process.tail(15))" }
        throw TestSetupError(report)
    }

    static func callState(_ id: String) -> PostgresQuery {
        "SELECT status, callback_status, callback_attempts::text, callback_error FROM async_calls WHERE id = \(id)::uuid"
    }
    static func deliveryState(_ id: String) -> PostgresQuery {
        "SELECT status, attempts::text, last_status::text, last_error FROM deliveries WHERE id = \(id)::uuid"
    }

    /// A job that ended, with a callback URL, and its pending deliveries (what notify records
    /// when the job ends): answers the deliveries' ids by channel.
    static func endedJob(_ fixture: PipelineFixture, callback: String, channels: [String]) async throws -> [String: String] {
        let job = UUID().uuidString.lowercased()
        try await fixture.clients.postgres.query("""
            INSERT INTO jobs (id, status, format, counts, callback_url) VALUES (\(job)::uuid, 'completed', 'ndjson', '{}'::jsonb, \(callback))
            """)
        let notice = JobNotice(jobID: job, status: "completed", counts: ["received": 0], finishedAt: Int64(Date().timeIntervalSince1970 * 1000))
        var ids: [String: String] = [:]
        for channel in channels {
            let id = UUID().uuidString.lowercased()
            try await fixture.clients.postgres.query("""
                INSERT INTO deliveries (id, job_id, event, channel, target, payload) VALUES (\(id)::uuid, \(job)::uuid, 'job.completed', \(channel), \(channel), \(notice.stored.serializedString)::jsonb)
                """)
            ids[channel] = id
        }
        return ids
    }

    /// Every loopback spelling libcurl (and so any delivery) would connect to the listener with.
    static func spellings(ipv6: Bool) -> [String] {
        ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f.1", "0177.0.0.1", "0x7f000001", "0", "0.0.0.0", "localhost",
         "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"] + (ipv6 ? ["[::1]", "[::]"] : [])
    }

    @Test func loopbackInEverySpellingIsRefusedAndRedirectsAreNotFollowed() async throws {
        let issuer = GatewayEndToEndTests.issuer, audience = GatewayEndToEndTests.audience
        var manifests = try GatewayEndToEndTests.manifests()
        let root = try TestEnvironment.get().packageRoot
        manifests["calls"] = manifests["calls"]?.replacingOccurrences(of: "callback_attempts: 8", with: "callback_attempts: 2")
        manifests["notify"] = try String(contentsOfFile: "\(root)/functions/notify/function.yaml", encoding: .utf8)
        let fixture = try await PipelineFixture(db: Self.db, manifests: manifests)
        let ipv6 = (try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8))?.contains("00000000000000000000000000000001") == true
        // The trap: where every refused URL points. The redirector: the one listener the
        // operator allows (by host and port), answering 302 to the trap.
        let trap = try await Self.listen("trap", addresses: ipv6 ? "127.0.0.1,::1" : "127.0.0.1", in: fixture.directory)
        let redirector: Listener
        do {
            redirector = try await Self.listen("redirect", addresses: "127.0.0.1", in: fixture.directory, location: "http://127.0.0.1:\(trap.port)/stolen")
        } catch {
            trap.stop()
            await fixture.stopAll()
            throw error
        }
        defer {
            trap.stop()
            redirector.stop()
        }
        let result: Result<Void, any Error>
        do {
            result = .success(try await Self.run(fixture, trap: trap, redirector: redirector, spellings: Self.spellings(ipv6: ipv6),
                                                 issuer: issuer, audience: audience))
        } catch {
            result = .failure(error)
        }
        await fixture.stopAll()
        try result.get()
    }

    static func run(_ fixture: PipelineFixture, trap: Listener, redirector: Listener, spellings: [String], issuer: String, audience: String) async throws {
        fixture.extraEnvironment = ["SLUICE_JWT_ISSUER": issuer, "SLUICE_JWT_AUDIENCE": audience,
                                    "SLUICE_CALLBACK_ALLOW_HOSTS": "127.0.0.1:\(redirector.port)"]
        try await fixture.start("ingest")
        try await fixture.start("calls")
        try await fixture.start("notify", environment: ["SLUICE_WEBHOOK_URL": "http://127.0.0.1:\(redirector.port)/webhook"])
        try await fixture.start("gateway", environment: [
            "SLUICE_JWT_SECRET": GatewayEndToEndTests.secret,
            "SLUICE_UPSTREAM_INGEST": fixture.url("ingest", ""), "SLUICE_UPSTREAM_CALLS": fixture.url("calls", ""),
        ])
        let token = try await GatewayEndToEndTests.cliToken(fixture, subject: "ssrf-user", roles: "ingest")

        // Every spelling reaches the trap (libcurl, as Sluice uses it, reads them all as loopback),
        // so a URL that got through would be delivered there.
        for spelling in spellings {
            let probe = try await runCommand("/usr/bin/curl", ["-g", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                                                               "http://\(spelling):\(trap.port)/probe"])
            #expect(probe.output == "200", "curl could not reach the trap at \(spelling): \(probe.output) \(probe.error)")
        }
        let probes = trap.requests
        #expect(probes == Array(repeating: "POST /probe", count: spellings.count))

        // Refused when given: an async call's X-Callback-Url, an upload's callback_url.
        let now = ISO8601DateFormatter().string(from: Date())
        let events = #"[{"metadata":{"event_id":"ssrf-1","timestamp":"\#(now)","version":"1","source":"e2e"},"user":{"id":"u1"},"payload":{"event_type":"click"}}]"#
        let line = #"{"metadata":{"event_id":"ssrf-2","timestamp":"\#(now)","version":"1","source":"e2e"},"user":{"id":"u2"},"payload":{"event_type":"click"}}"#
        for spelling in spellings {
            let url = "http://\(spelling):\(trap.port)/hook"
            let call = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/validate/async"), body: Data(events.utf8), headers: [
                "Authorization": "Bearer \(token)", "Content-Type": "application/json", "X-Callback-Url": url,
            ])
            #expect(call.status == 400, "\(url): \(call.status) \(call.text)")
            #expect(Self.problem(call) == ["invalid_callback_url", "callback_url_private_address"], "\(url): \(call.text)")
            let encoded = url.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let upload = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/ingest?callback_url=\(encoded)"), body: Data(line.utf8),
                                                headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/x-ndjson"])
            #expect(upload.status == 400, "\(url): \(upload.status) \(upload.text)")
            #expect(Self.problem(upload) == ["invalid_callback_url", "callback_url_private_address"], "\(url): \(upload.text)")
        }
        // Nothing was queued or received.
        #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM async_calls").scalar == "0")
        #expect(try await fixture.clients.postgres.query("SELECT count(*) FROM jobs").scalar == "0")

        // Checked again when sent (DNS may have changed since): URLs stored as if they had
        // passed fail at their first attempt, and nothing is sent.
        var stored: [String] = []
        for spelling in ["127.1", "0x7f.1", "[::ffff:7f00:1]"] {
            let id = UUID().uuidString.lowercased()
            try await fixture.clients.postgres.query("""
                INSERT INTO async_calls (id, function, events, callback_url) VALUES (\(id)::uuid, 'validate', '[]'::jsonb, \("http://\(spelling):\(trap.port)/hook"))
                """)
            stored.append(id)
        }
        for id in stored {
            let row = try await Self.waitFor(fixture, Self.callState, id) { $0[1] == "failed" }
            #expect(Array(row[1...]) == ["failed", "1", "callback_url_private_address"], "\(id)")
        }
        let storedJob = try await Self.endedJob(fixture, callback: "http://2130706433:\(trap.port)/hook", channels: ["callback"])
        let refusedDelivery = try await Self.waitFor(fixture, Self.deliveryState, storedJob["callback"]!) { $0[0] != "pending" }
        #expect(refusedDelivery == ["dead_lettered", "1", nil, "callback_url_private_address"])

        // A redirect is never followed: the allowed listener answers 302 to the trap. The
        // async call's callback is tried callback_attempts (2) times and failed.
        let queued = try await HTTP.request("POST", fixture.url("gateway", "/api/v1/functions/validate/async"), body: Data(events.utf8), headers: [
            "Authorization": "Bearer \(token)", "Content-Type": "application/json",
            "X-Callback-Url": "http://127.0.0.1:\(redirector.port)/call-callback",
        ])
        #expect(queued.status == 202, "\(queued.text)")
        let id = try #require(try JSONParser().parse(Array(queued.body))["call_id"]?.stringValue)
        let redirected = try await Self.waitFor(fixture, Self.callState, id) { $0[1] == "failed" }
        #expect(redirected == ["succeeded", "failed", "2", "answered 302"])
        let call = try JSONParser().parse(Array(try await HTTP.request("GET", fixture.url("gateway", "/api/v1/calls/\(id)"),
                                                                       headers: ["Authorization": "Bearer \(token)"]).body))
        let expected: JSONValue = ["status": "failed", "attempts": 2, "last_error": "answered 302"]
        #expect(call["callback"] == expected)
        // notify's job callback and its configured webhook: dead-lettered at the first 3xx.
        let job = try await Self.endedJob(fixture, callback: "http://127.0.0.1:\(redirector.port)/job-callback", channels: ["callback", "webhook"])
        for channel in ["callback", "webhook"] {
            let row = try await Self.waitFor(fixture, Self.deliveryState, job[channel]!) { $0[0] != "pending" }
            #expect(row == ["dead_lettered", "1", "302", "HTTP 302"], "\(channel)")
        }
        #expect(redirector.requests.sorted() == ["POST /call-callback", "POST /call-callback", "POST /job-callback", "POST /webhook"])

        // The trap got the test's own probes and nothing from Sluice.
        try await Task.sleep(for: .milliseconds(500))
        #expect(trap.requests == probes)
    }
}
