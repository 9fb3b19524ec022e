import Foundation
import Sluice

/// A job's end as notify announces it: what the `jobs` stream carries (`job_id`, `status`,
/// `counts`, `finished_at` in Unix milliseconds, `error` for failures).
public struct JobNotice: Sendable, Equatable {
    public var jobID: String
    public var status: String
    public var counts: JSONObject
    public var finishedAt: Int64
    public var error: String?

    public init(jobID: String, status: String, counts: JSONObject, finishedAt: Int64, error: String? = nil) {
        self.jobID = jobID
        self.status = status
        self.counts = counts
        self.finishedAt = finishedAt
        self.error = error
    }

    /// Reads a `jobs` stream event; `nil` when it is not one.
    public init?(_ value: JSONValue) {
        guard let id = value["job_id"]?.stringValue, let status = value["status"]?.stringValue else { return nil }
        jobID = id
        self.status = status
        counts = value["counts"]?.objectValue ?? [:]
        finishedAt = value["finished_at"]?.intValue ?? 0
        error = value["error"]?.stringValue
    }

    /// The notice as the `jobs` stream carries it (what `init?(_:)` reads).
    public var stored: JSONValue {
        var object: JSONObject = ["job_id": .string(jobID), "status": .string(status), "counts": .object(counts), "finished_at": .int(finishedAt)]
        if let error { object["error"] = .string(error) }
        return .object(object)
    }

    /// `job.completed`, `job.failed` or `job.cancelled`.
    public var type: String { "job.\(status)" }

    /// The counts in the order the API documents them (those present).
    static let countOrder = JobCounters.reported

    var orderedCounts: [(String, Int64)] {
        Self.countOrder.compactMap { name in counts[name]?.intValue.map { (name, $0) } }
    }

    var finishedISO: String {
        let date = Date(timeIntervalSince1970: Double(finishedAt) / 1000)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// The JSON of `data` in a webhook, the same for the global webhook and a job's callback.
    public var data: JSONValue {
        var object: JSONObject = ["job_id": .string(jobID), "status": .string(status)]
        var ordered = JSONObject()
        for (name, value) in orderedCounts { ordered[name] = .int(value) }
        object["counts"] = .object(ordered)
        object["finished_at"] = .string(finishedISO)
        if let error { object["error"] = .string(error) }
        return .object(object)
    }
}

/// The bodies notify sends, one per channel.
public enum NotificationMessage {
    /// A webhook's JSON: `{"id", "type", "created_at", "data"}`; `id` is the delivery's id, the
    /// same on every attempt, so that a receiver can drop a repeat.
    public static func webhook(_ notice: JobNotice, deliveryID: String) -> [UInt8] {
        JSONValue.object([
            "id": .string(deliveryID), "type": .string(notice.type), "created_at": .string(notice.finishedISO), "data": notice.data,
        ]).serializedBytes
    }

    /// Slack incoming-webhook JSON with blocks: a header, the counts as fields, and a context line.
    public static func slack(_ notice: JobNotice) -> [UInt8] {
        let icon = switch JobStatus(rawValue: notice.status) {
        case .completed?: ":white_check_mark:"
        case .failed?: ":x:"
        default: ":no_entry_sign:"
        }
        let title = "Sluice job \(notice.status)"
        var fields: [JSONValue] = [["type": "mrkdwn", "text": .string("*Job*\n`\(notice.jobID)`")]]
        for (name, value) in notice.orderedCounts.prefix(9) {
            fields.append(["type": "mrkdwn", "text": .string("*\(name)*\n\(value)")])
        }
        var blocks: [JSONValue] = [
            ["type": "header", "text": ["type": "plain_text", "text": .string("\(title)"), "emoji": true]],
            ["type": "section", "fields": .array(Array(fields.prefix(10)))],
        ]
        var context = "\(icon) finished \(notice.finishedISO)"
        if let error = notice.error { context += " · error `\(error)`" }
        blocks.append(["type": "context", "elements": [["type": "mrkdwn", "text": .string(context)]]])
        return JSONValue.object(["text": .string("\(title): \(notice.jobID)"), "blocks": .array(blocks)]).serializedBytes
    }

    /// An RFC 5322 message (CRLF lines, UTF-8 plain text) with the job's summary.
    public static func email(_ notice: JobNotice, from: String, to: [String], messageID: String, date: Date = Date()) -> [UInt8] {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        let domain = from.split(separator: "@").last.map(String.init) ?? "sluice.local"
        var lines = [
            "Date: \(formatter.string(from: date))",
            "From: \(from)",
            "To: \(to.joined(separator: ", "))",
            "Message-ID: <\(messageID)@\(domain)>",
            "Subject: Sluice job \(notice.status): \(notice.jobID)",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            "Job \(notice.jobID) \(notice.status) at \(notice.finishedISO).",
            "",
        ]
        for (name, value) in notice.orderedCounts { lines.append("  \(name): \(value)") }
        if let error = notice.error { lines += ["", "Error: \(error)"] }
        // A line of a single "." would end the SMTP DATA early: libcurl escapes it, and none is written here.
        return Array((lines.joined(separator: "\r\n") + "\r\n").utf8)
    }
}

/// The `Sluice-Signature` header of a webhook: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">`, keyed by `SLUICE_WEBHOOK_SECRET`. A receiver recomputes it and refuses a
/// timestamp too far from its clock (replays).
public enum WebhookSignature {
    public static let header = "Sluice-Signature"

    public static func sign(body: [UInt8], timestamp: Int64, secret: [UInt8]) -> String {
        "t=\(timestamp),v1=\(SHA256.hexString(HMACSHA256.authenticationCode(for: Array("\(timestamp).".utf8) + body, key: secret)))"
    }

    /// Whether `header` signs `body` with `secret` within `tolerance` seconds of `now`.
    public static func verify(header: String, body: [UInt8], secret: [UInt8], now: Int64, tolerance: Int64 = 300) -> Bool {
        var timestamp: Int64?
        var signatures: [String] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { timestamp = Int64(pair[1]) } else if pair[0] == "v1" { signatures.append(pair[1]) }
        }
        guard let timestamp, abs(now - timestamp) <= tolerance else { return false }
        let expected = Array(sign(body: body, timestamp: timestamp, secret: secret).split(separator: "=").last!.utf8)
        // Constant time over the candidates' bytes.
        return signatures.contains { candidate in
            let bytes = Array(candidate.utf8)
            guard bytes.count == expected.count else { return false }
            return zip(bytes, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
        }
    }
}
