import Foundation
import Sluice
import SluiceHTTP
import SluiceNotify
import Testing

/// notify as its own process after the pipeline of `functions/`, delivering to a real HTTP
/// receiver (Python's http.server) and a real SMTP sink (aiosmtpd).
@Suite("Notify end to end", .serialized)
struct NotifyEndToEndTests {
    /// A receiver's log line.
    struct Received {
        let path: String
        let time: Double
        let status: Int
        let headers: [String: String]
        let body: [UInt8]
        var json: JSONValue { (try? JSONParser().parse(body)) ?? .null }
    }

    static func received(_ log: String) -> [Received] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            guard let value = try? JSONParser().parse(String(line)), let path = value["path"]?.stringValue,
                  let body = value["body"]?.stringValue.flatMap({ Data(base64Encoded: $0) }) else { return nil }
            var headers: [String: String] = [:]
            for (name, header) in value["headers"]?.objectValue ?? [:] { headers[name] = header.stringValue }
            return Received(path: path, time: value["time"]?.doubleValue ?? Double(value["time"]?.intValue ?? 0),
                            status: Int(value["status"]?.intValue ?? 0), headers: headers, body: Array(body))
        }
    }

    static func python() throws -> String {
        guard let python = ProcessInfo.processInfo.environment["SLUICE_PYTHON"] else {
            throw TestSetupError("SLUICE_PYTHON is not set: run the suite with `make test` (scripts/python-tools.sh installs aiosmtpd)")
        }
        return python
    }

    /// Waits until the job's deliveries are all settled (not pending); answers them by channel.
    static func settledDeliveries(_ fixture: PipelineFixture, job: String, count: Int, timeout: Duration = .seconds(60)) async throws -> [String: [String?]] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let rows = try await fixture.clients.postgres.query("""
                SELECT channel, status, attempts::text, last_status::text, last_error, target FROM deliveries WHERE job_id = \(job)::uuid
                """)
            if rows.rows.count == count && rows.rows.allSatisfy({ $0[1] != "pending" }) {
                var byChannel: [String: [String?]] = [:]
                for row in rows.rows { byChannel[row[0] ?? ""] = Array(row[1...]) }
                return byChannel
            }
            guard ContinuousClock.now < deadline else {
                throw TestSetupError("deliveries of \(job) not settled: \(rows.rows)\n\(fixture.processes["notify"]?.tail(20) ?? "")")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func everyJobIsAnnouncedOnceByWebhookSlackAndEmail() async throws {
        let python = try Self.python()
        let root = try TestEnvironment.get().packageRoot
        var manifests = try PipelineFixture.pipelineManifests()
        manifests["notify"] = try String(contentsOfFile: "\(root)/functions/notify/function.yaml", encoding: .utf8)
            .replacingOccurrences(of: "max_attempts: 6 ", with: "max_attempts: 4 ")
            .replacingOccurrences(of: "initial_backoff: 1s ", with: "initial_backoff: 200ms ")
        try await PipelineFixture.with(db: 10, manifests: manifests) { fixture in
            let receiverPort = freePort(), smtpPort = freePort()
            let receiverLog = "\(fixture.directory)/received.jsonl", maildir = "\(fixture.directory)/maildir"
            let receiver = try Child(python, ["\(root)/Tests/tools/webhook_receiver.py", String(receiverPort), receiverLog],
                                     environment: [:], stdout: "\(fixture.directory)/receiver.out", stderr: "\(fixture.directory)/receiver.err")
            let smtp = try Child(python, ["-m", "aiosmtpd", "-n", "-l", "127.0.0.1:\(smtpPort)", "-c", "aiosmtpd.handlers.Mailbox", maildir],
                                 environment: [:], stdout: "\(fixture.directory)/smtp.out", stderr: "\(fixture.directory)/smtp.err")
            defer {
                kill(receiver.pid, SIGKILL)
                kill(smtp.pid, SIGKILL)
                _ = receiver.poll()
                _ = smtp.poll()
            }
            for port in [receiverPort, smtpPort] { try await waitForListener(port) }

            let base = "http://127.0.0.1:\(receiverPort)"
            fixture.extraEnvironment["SLUICE_CALLBACK_ALLOW_HOSTS"] = "127.0.0.1"
            try await fixture.startPipeline()
            try await fixture.start("notify", environment: [
                "SLUICE_WEBHOOK_URL": "\(base)/hook", "SLUICE_SLACK_WEBHOOK_URL": "\(base)/slack",
                "SLUICE_SMTP_URL": "smtp://127.0.0.1:\(smtpPort)?starttls=off",
                "SLUICE_NOTIFY_EMAIL_FROM": "sluice@example.test", "SLUICE_NOTIFY_EMAIL_TO": "ops@example.test,data@example.test",
                "SLUICE_LOG_LEVEL": "debug",
            ])

            func event(_ id: String) -> String {
                #"{"metadata":{"event_id":"\#(id)","timestamp":"\#(ISO8601DateFormatter().string(from: Date()))","version":"1","source":"e2e"},"user":{"id":"u-n1"},"payload":{"event_type":"click"}}"#
            }
            func upload(_ ids: [String], callback: String, traceparent: String? = nil) async throws -> String {
                var headers = ["Content-Type": "application/x-ndjson", "X-Callback-Url": callback]
                if let traceparent { headers["traceparent"] = traceparent }
                let response = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/ingest"), body: Data(ids.map(event).joined(separator: "\n").utf8),
                                                      headers: headers)
                #expect(response.status == 202, "\(response.text)")
                let id = try #require(try JSONParser().parse(Array(response.body))["job_id"]?.stringValue)
                #expect(try await fixture.waitForJob(id)["status"]?.stringValue == "completed")
                return id
            }
            // A callback that fails twice, one that always fails, one that asks to wait.
            let trace = "0af7651916cd43dd8448eb211c80319c"
            let flaky = try await upload(["n-1", "n-2", "n-3"], callback: "\(base)/fail-twice?token=abc",
                                         traceparent: "00-\(trace)-b7ad6b7169203331-01")
            let broken = try await upload(["n-4"], callback: "\(base)/always-500")
            let patient = try await upload(["n-5"], callback: "\(base)/retry-after")

            let flakyDeliveries = try await Self.settledDeliveries(fixture, job: flaky, count: 4)
            #expect(flakyDeliveries["webhook"]?[0] == "delivered" && flakyDeliveries["webhook"]?[1] == "1")
            #expect(flakyDeliveries["slack"]?[0] == "delivered")
            #expect(flakyDeliveries["email"]?[0] == "delivered")
            #expect(flakyDeliveries["callback"]?[0] == "delivered")
            #expect(flakyDeliveries["callback"]?[1] == "3", "the third attempt of the callback succeeds")
            #expect(flakyDeliveries["callback"]?[4] == "\(base)/fail-twice", "the target is stored without its query")
            let brokenDeliveries = try await Self.settledDeliveries(fixture, job: broken, count: 4)
            #expect(brokenDeliveries["callback"]?[0] == "dead_lettered")
            #expect(brokenDeliveries["callback"]?[1] == "4")
            #expect(brokenDeliveries["callback"]?[2] == "500")
            #expect(brokenDeliveries["callback"]?[3] == "HTTP 500")
            let patientDeliveries = try await Self.settledDeliveries(fixture, job: patient, count: 4)
            #expect(patientDeliveries["callback"]?[0] == "delivered")
            #expect(patientDeliveries["callback"]?[1] == "2")

            let received = Self.received(receiverLog)
            let secret = Array(PipelineFixture.webhookSecret.utf8)
            let now = Int64(Date().timeIntervalSince1970)
            // Exactly one webhook per job, each signed, carrying the job's counts.
            let hooks = received.filter { $0.path == "/hook" }
            #expect(hooks.map { $0.json["data"]?["job_id"]?.stringValue ?? "" }.sorted() == [flaky, broken, patient].sorted())
            for hook in hooks {
                #expect(WebhookSignature.verify(header: hook.headers["sluice-signature"] ?? "", body: hook.body, secret: secret, now: now))
                #expect(!WebhookSignature.verify(header: hook.headers["sluice-signature"] ?? "", body: hook.body + [0x20], secret: secret, now: now),
                        "a changed body fails the signature")
                #expect(hook.json["type"]?.stringValue == "job.completed")
                #expect(hook.headers["sluice-event"] == "job.completed")
            }
            let flakyHook = try #require(hooks.first { $0.json["data"]?["job_id"]?.stringValue == flaky })
            #expect(flakyHook.json["data"]?["counts"]?["received"]?.intValue == 3)
            #expect(flakyHook.json["data"]?["counts"]?["loaded"]?.intValue == 3)
            #expect(flakyHook.json["data"]?["status"]?.stringValue == "completed")

            // The callback that failed twice got three attempts of one delivery, the same body each time.
            let flakyCalls = received.filter { $0.path == "/fail-twice?token=abc" }
            #expect(flakyCalls.map(\.status) == [500, 500, 200])
            #expect(Set(flakyCalls.map(\.body)).count == 1)
            #expect(Set(flakyCalls.compactMap { $0.headers["sluice-delivery"] }).count == 1)
            #expect(flakyCalls.map { $0.headers["sluice-attempt"] ?? "" } == ["1", "2", "3"])
            // The upload's trace reaches the receivers: the webhook and every callback attempt
            // continue it (trace id kept, a new span id each).
            let traced = flakyCalls + hooks.filter { $0.json["data"]?["job_id"]?.stringValue == flaky }
            #expect(traced.count == 4)
            #expect(traced.allSatisfy { TraceContext.traceID(fromTraceparent: $0.headers["traceparent"] ?? "") == trace },
                    "\(traced.map { $0.headers["traceparent"] ?? "none" })")
            #expect(Set(traced.compactMap { $0.headers["traceparent"] }).count == 4, "a new span id per attempt")
            // The jobs stream carried it too: notify logged the job's end with it.
            #expect(jsonLogLines(fixture.processes["notify"]!.log).contains { $0["msg"] == "chunk acknowledged" && $0["trace"] == trace && $0["function"] == "notify" })
            for call in flakyCalls {
                #expect(WebhookSignature.verify(header: call.headers["sluice-signature"] ?? "", body: call.body, secret: secret, now: now))
            }
            #expect(received.filter { $0.path == "/always-500" }.count == 4)
            // Retry-After: 1 is honoured.
            let patientCalls = received.filter { $0.path == "/retry-after" }
            #expect(patientCalls.map(\.status) == [429, 200])
            if patientCalls.count == 2 { #expect(patientCalls[1].time - patientCalls[0].time >= 0.95) }

            // Slack: one message per job, in incoming-webhook format with blocks.
            let slack = received.filter { $0.path == "/slack" }
            #expect(slack.count == 3)
            let message = try #require(slack.first { $0.json["text"]?.stringValue?.contains(flaky) == true })
            let blocks = message.json["blocks"]?.arrayValue ?? []
            #expect(blocks.map { $0["type"]?.stringValue ?? "" } == ["header", "section", "context"])
            #expect(blocks.first?["text"]?["type"]?.stringValue == "plain_text")
            #expect(blocks[1]["fields"]?.arrayValue?.contains { $0["text"]?.stringValue == "*loaded*\n3" } == true)

            // Email: one message per job in the SMTP sink, to both recipients.
            let messages = try FileManager.default.contentsOfDirectory(atPath: "\(maildir)/new")
            #expect(messages.count == 3)
            let texts = try messages.map { try String(contentsOfFile: "\(maildir)/new/\($0)", encoding: .utf8) }
            let mail = try #require(texts.first { $0.contains("Subject: Sluice job completed: \(flaky)") })
            #expect(mail.contains("From: sluice@example.test"))
            #expect(mail.contains("To: ops@example.test, data@example.test"))
            #expect(mail.contains("  loaded: 3"))

            // Every attempt is counted by channel and result.
            let metrics = try await HTTP.request("GET", fixture.url("notify", "/metrics")).text
            for line in [
                #"sluice_notify_deliveries_total{channel="callback",result="retried"} 6"#,
                #"sluice_notify_deliveries_total{channel="callback",result="delivered"} 2"#,
                #"sluice_notify_deliveries_total{channel="callback",result="dead_lettered"} 1"#,
                #"sluice_notify_deliveries_total{channel="webhook",result="delivered"} 3"#,
                #"sluice_notify_deliveries_total{channel="slack",result="delivered"} 3"#,
                #"sluice_notify_deliveries_total{channel="email",result="delivered"} 3"#,
            ] {
                #expect(metrics.contains(line), "\(line)")
            }

            // Callbacks to internal addresses are refused at upload.
            for refused in ["http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://localhost:9/x", "ftp://example.com/x", "http://user:pw@example.com/"] {
                let response = try await HTTP.request("POST", fixture.url("ingest", "/api/v1/ingest?callback_url=\(refused.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)"),
                                                      body: Data(event("n-refused").utf8), headers: ["Content-Type": "application/x-ndjson"])
                #expect(response.status == 400, "\(refused): \(response.status)")
                #expect((try? JSONParser().parse(Array(response.body)))?["code"]?.stringValue == "invalid_callback_url", "\(refused)")
            }
        }
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
func waitForListener(_ port: Int, timeout: Duration = .seconds(15)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if connected == 0 { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestSetupError("nothing listens on port \(port)")
}
