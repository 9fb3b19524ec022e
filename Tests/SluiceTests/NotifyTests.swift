import Foundation
import Sluice
@testable import SluiceFunctions
@testable import SluiceNotify
import Testing

@Suite("Notify messages and signatures")
struct NotifyTests {
    let notice = JobNotice(jobID: "0b7c7e8e-1d2f-4a55-9f0e-3f1f5c7e2a10", status: "completed",
                           counts: ["received": 10, "loaded": 7, "quarantined": 1, "stale": 1, "duplicate": 1, "no_consent": 0],
                           finishedAt: 1_763_900_000_123)

    @Test func theSignatureIsHMACSHA256OfTimestampDotBody() {
        // Known answer, from Python: hmac.new(key, b"1700000000." + body, hashlib.sha256).hexdigest()
        let header = WebhookSignature.sign(body: Array(#"{"a":1}"#.utf8), timestamp: 1_700_000_000, secret: Array("whsec-0123456789abcdef".utf8))
        #expect(header == "t=1700000000,v1=d77c78ac4da074c56908b55eac30358b2a7bfc573be4c76819af5102e8dcf939")
    }

    @Test func verificationRefusesChangedBodiesOtherKeysAndOldTimestamps() {
        let body = Array(#"{"a":1}"#.utf8), secret = Array("whsec-0123456789abcdef".utf8)
        let header = WebhookSignature.sign(body: body, timestamp: 1_700_000_000, secret: secret)
        #expect(WebhookSignature.verify(header: header, body: body, secret: secret, now: 1_700_000_100))
        #expect(!WebhookSignature.verify(header: header, body: Array(#"{"a":2}"#.utf8), secret: secret, now: 1_700_000_100))
        #expect(!WebhookSignature.verify(header: header, body: body, secret: Array("another-secret-0123456".utf8), now: 1_700_000_100))
        #expect(!WebhookSignature.verify(header: header, body: body, secret: secret, now: 1_700_000_301), "older than the tolerance")
        #expect(!WebhookSignature.verify(header: "v1=abc", body: body, secret: secret, now: 1_700_000_000))
        #expect(!WebhookSignature.verify(header: header.replacingOccurrences(of: "t=1700000000", with: "t=1700000001"), body: body,
                                         secret: secret, now: 1_700_000_000), "the timestamp is signed")
    }

    @Test func theWebhookBody() throws {
        let body = try JSONParser().parse(NotificationMessage.webhook(notice, deliveryID: "d-1"))
        #expect(body["id"]?.stringValue == "d-1")
        #expect(body["type"]?.stringValue == "job.completed")
        #expect(body["created_at"]?.stringValue == "2025-11-23T12:13:20.123Z")
        #expect(body["data"]?["job_id"]?.stringValue == notice.jobID)
        #expect(body["data"]?["counts"]?.objectValue?.keys.map { $0 } == ["received", "loaded", "quarantined", "stale", "duplicate", "no_consent"])
        #expect(body["data"]?["error"] == nil)
        // Stored and read back, the notice is the same.
        #expect(JobNotice(notice.stored) == notice)
    }

    @Test func theSlackMessageHasBlocks() throws {
        var failed = notice
        failed.status = "failed"
        failed.error = "dead_lettered"
        let message = try JSONParser().parse(NotificationMessage.slack(failed))
        #expect(message["text"]?.stringValue == "Sluice job failed: \(notice.jobID)")
        let blocks = message["blocks"]?.arrayValue ?? []
        #expect(blocks.map { $0["type"]?.stringValue ?? "" } == ["header", "section", "context"])
        #expect(blocks[0]["text"]?["text"]?.stringValue == "Sluice job failed")
        let fields = blocks[1]["fields"]?.arrayValue?.compactMap { $0["text"]?.stringValue } ?? []
        #expect(fields.first == "*Job*\n`\(notice.jobID)`")
        #expect(fields.contains("*loaded*\n7"))
        #expect(fields.count <= 10, "Slack allows at most 10 fields")
        #expect(blocks[2]["elements"]?[0]?["text"]?.stringValue == ":x: finished 2025-11-23T12:13:20.123Z · error `dead_lettered`")
    }

    @Test func theEmailIsAnRFC5322Message() {
        let text = String(decoding: NotificationMessage.email(notice, from: "sluice@example.test", to: ["a@example.test", "b@example.test"],
                                                              messageID: "d-1", date: Date(timeIntervalSince1970: 1_763_900_000)), as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines.prefix(8) == [
            "Date: Sun, 23 Nov 2025 12:13:20 +0000", "From: sluice@example.test", "To: a@example.test, b@example.test",
            "Message-ID: <d-1@example.test>", "Subject: Sluice job completed: \(notice.jobID)", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        ])
        #expect(lines.contains("  loaded: 7"))
        #expect(!text.contains("\n.\r") && !lines.contains("."))
        #expect(!text.replacingOccurrences(of: "\r\n", with: "").contains("\n"), "every line ends in CRLF")
    }

    @Test func retryAfterAsSecondsOrDate() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(DeliveryWorker.retryAfter("7", now: now) == .seconds(7))
        #expect(DeliveryWorker.retryAfter(" 0 ", now: now) == .seconds(0))
        #expect(DeliveryWorker.retryAfter("Tue, 14 Nov 2023 22:13:30 GMT", now: now) == .seconds(10))
        #expect(DeliveryWorker.retryAfter("Tue, 14 Nov 2023 22:13:10 GMT", now: now) == .zero, "a date in the past: now")
        #expect(DeliveryWorker.retryAfter("soon", now: now) == nil)
        #expect(DeliveryWorker.retryAfter("-3", now: now) == nil)
    }
}
