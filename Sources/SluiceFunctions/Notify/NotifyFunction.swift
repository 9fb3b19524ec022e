import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import Sluice
import SluiceHTTP
import SluiceNotify
import SluicePostgres

/// Announces the end of jobs: consumes the `jobs` stream and, for each job that ended in a
/// status of `config.on`, records one delivery per channel in `deliveries` (in one statement,
/// idempotent, so a redelivered stream entry announces nothing twice). The delivery worker, a
/// service of the process, then sends them, retries and dead-letters:
///
/// - `webhook`: JSON POST to `SLUICE_WEBHOOK_URL`, signed (`Sluice-Signature: t=…,v1=…`,
///   HMAC-SHA256 of `t.body` keyed by `SLUICE_WEBHOOK_SECRET`);
/// - `callback`: the same to the job's `callback_url` (given at upload), checked against the
///   outbound policy again when sent;
/// - `slack`: incoming-webhook JSON with blocks to `SLUICE_SLACK_WEBHOOK_URL`;
/// - `email`: SMTP through libcurl to `SLUICE_SMTP_URL`, from `SLUICE_NOTIFY_EMAIL_FROM` to
///   `SLUICE_NOTIFY_EMAIL_TO`.
///
/// Every channel sends through ``OutboundPolicy`` (resolved, pinned, no redirect, no proxy); the
/// hosts of the configured URLs are allowed for their own channel only.
public struct NotifyFunction: EventFunction {
    let pool: PostgresPool
    let settings: NotifySettings
    let logger: Logger

    public init(setup: PipelineSetup) throws {
        let manifest = setup.manifest
        pool = setup.dependencies.postgres
        logger = setup.logger
        settings = try NotifySettings(manifest: manifest, runtime: setup.configuration)
        let (pool, settings, logger) = (pool, settings, setup.logger)
        setup.dependencies.shared.startDeliveryWorker { DeliveryWorker(pool: pool, settings: settings, logger: logger) }
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for event in chunk.events {
            guard let notice = JobNotice(event.value), SQLText.isUUID(notice.jobID) else {
                outcomes.append(.quarantine(reason: "bad_job_event", event: event))
                continue
            }
            guard settings.statuses.contains(notice.status) else {
                outcomes.append(.drop(reason: "not_announced"))
                continue
            }
            // A job that ended long before notify first saw it (a notify deployed next to an
            // old jobs stream) is not announced now.
            guard notice.finishedAt == 0 || now - notice.finishedAt <= settings.maxAgeMilliseconds else {
                outcomes.append(.drop(reason: "too_old"))
                continue
            }
            do {
                try await record(notice, traceID: context.traceID.flatMap(TraceContext.validTraceID))
            } catch let error as PostgresError {
                throw FunctionError.retryable(error.code.rawValue, error.sqlState.map { "SQLSTATE \($0)" } ?? "database error")
            }
            outcomes.append(.forward(event))
        }
        return outcomes
    }

    /// One row per configured channel, and one for the job's callback URL if it has one; every
    /// target labelled by ``NotifySettings/label(_:)``.
    func record(_ notice: JobNotice, traceID: String?) async throws {
        let configured: [(channel: String, target: String)] = [
            settings.webhookURL.map { ("webhook", NotifySettings.label($0)) },
            settings.slackWebhookURL.map { _ in ("slack", "slack") },
            settings.mail.map { ("email", $0.to.joined(separator: ",")) },
        ].compactMap { $0 }
        let payload = notice.stored.serializedString
        try await pool.withTransaction { connection in
            var rows = configured
            if let callback = try JobStore.callbackURL(of: notice.jobID, on: connection) {
                rows.append(("callback", NotifySettings.label(callback)))
            }
            guard !rows.isEmpty else { return }
            _ = try connection.query("""
                INSERT INTO deliveries (job_id, event, channel, target, payload, trace_id)
                SELECT \(notice.jobID)::uuid, \(notice.type), c, t, \(payload)::jsonb, \(traceID)
                FROM unnest(\(rows.map(\.channel))::text[], \(rows.map(\.target))::text[]) AS r (c, t)
                ON CONFLICT (job_id, event, channel) DO NOTHING
                """)
        }
    }
}

/// What notify sends where, from its manifest and the environment.
struct NotifySettings: Sendable {
    struct Mail: Sendable {
        var url: String
        var tls: Curl.MailTLS
        var from: String
        var to: [String]
        var caFile: String?
    }

    var statuses: Set<String>
    var retry: RetryPolicy
    var maxRetryAfter: Duration
    var timeout: Duration
    var maxAgeMilliseconds: Int64
    var pollInterval: Duration
    var parallel: Int
    var webhookURL: String?
    var secret: [UInt8]
    var slackWebhookURL: String?
    var mail: Mail?
    /// Callers' callback URLs: `SLUICE_CALLBACK_ALLOW_HOSTS` only.
    var callbacks: OutboundPolicy
    /// The policy for SLUICE_WEBHOOK_URL: the callbacks' plus that URL's host and port.
    var webhookPolicy: OutboundPolicy
    /// The same for SLUICE_SLACK_WEBHOOK_URL.
    var slackPolicy: OutboundPolicy
    /// The same for SLUICE_SMTP_URL (smtp and smtps).
    var mailPolicy: OutboundPolicy

    init(manifest: Manifest, runtime: RuntimeConfiguration) throws {
        let config = manifest.config
        statuses = [JobStatus.completed.rawValue, JobStatus.failed.rawValue]
        if let given = config["on"] {
            let names = given.arrayValue?.compactMap(\.stringValue) ?? []
            let final = JobStatus.final.map(\.rawValue)
            guard !names.isEmpty, names.count == given.arrayValue?.count, Set(names).isSubset(of: final) else {
                throw ManifestError(.badValue, file: manifest.file, key: "config.on",
                                    message: "must list job statuses: \(final.joined(separator: ", "))")
            }
            statuses = Set(names)
        }
        let attempts = Int(config["max_attempts"]?.intValue ?? 6)
        guard (1...100).contains(attempts) else {
            throw ManifestError(.badValue, file: manifest.file, key: "config.max_attempts", message: "must be 1 to 100")
        }
        retry = RetryPolicy(maxAttempts: attempts, initialBackoff: try manifest.configDuration("initial_backoff", default: .seconds(1)),
                            maxBackoff: try manifest.configDuration("max_backoff", default: .seconds(300)))
        maxRetryAfter = try manifest.configDuration("max_retry_after", default: .seconds(3600))
        timeout = try manifest.configDuration("timeout", default: .seconds(10))
        let maxAge = try manifest.configDuration("max_age", default: .seconds(3600))
        maxAgeMilliseconds = maxAge.components.seconds * 1000
        pollInterval = try manifest.configDuration("poll_interval", default: .milliseconds(200))
        parallel = max(1, Int(config["parallel"]?.intValue ?? 4))
        webhookURL = runtime.webhookURL
        secret = Array((runtime.webhookSecret ?? "").utf8)
        guard secret.count >= 16 else {
            throw ManifestError(.badValue, file: manifest.file, key: "handler",
                                message: "notify signs webhooks and callbacks: set SLUICE_WEBHOOK_SECRET (at least 16 bytes)")
        }
        slackWebhookURL = runtime.slackWebhookURL
        if let smtp = runtime.smtpURL {
            guard let from = runtime.emailFrom, !runtime.emailTo.isEmpty else {
                throw ManifestError(.badValue, file: manifest.file, key: "handler",
                                    message: "SLUICE_SMTP_URL needs SLUICE_NOTIFY_EMAIL_FROM and SLUICE_NOTIFY_EMAIL_TO")
            }
            var components = URLComponents(string: smtp)
            let mode = components?.queryItems?.first { $0.name == "starttls" }?.value ?? "try"
            let tls: Curl.MailTLS
            switch mode {
            case "required": tls = .required
            case "try": tls = .opportunistic
            case "off": tls = .off
            default:
                throw ManifestError(.badValue, file: manifest.file, key: "handler", message: "SLUICE_SMTP_URL: starttls must be required, try or off")
            }
            let caFile = components?.queryItems?.first { $0.name == "ca_file" }?.value
            components?.query = nil
            guard let scheme = components?.scheme, ["smtp", "smtps"].contains(scheme), let url = components?.string else {
                throw ManifestError(.badValue, file: manifest.file, key: "handler", message: "SLUICE_SMTP_URL must be smtp://host:port or smtps://host:port")
            }
            mail = Mail(url: url, tls: scheme == "smtps" ? .off : tls, from: from, to: runtime.emailTo, caFile: caFile)
        }
        callbacks = OutboundPolicy(allowedHosts: runtime.callbackAllowHosts)
        func trusted(_ url: String?, _ variable: String, schemes: Set<String> = ["http", "https"]) throws -> OutboundPolicy {
            let policy = OutboundPolicy(allowedHosts: runtime.callbackAllowHosts, schemes: schemes)
            guard let url else { return policy }
            do {
                return try policy.trusting(url)
            } catch {
                // The URL itself is not shown: it may hold a secret (Slack's does).
                throw ManifestError(.badValue, file: manifest.file, key: "handler", message: "\(variable) cannot be used: \(error.detail)")
            }
        }
        webhookPolicy = try trusted(webhookURL, "SLUICE_WEBHOOK_URL")
        slackPolicy = try trusted(slackWebhookURL, "SLUICE_SLACK_WEBHOOK_URL")
        mailPolicy = try trusted(mail?.url, "SLUICE_SMTP_URL", schemes: ["smtp", "smtps"])
    }

    /// A URL without what may be secret: user info, query and fragment.
    static func label(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return "unparseable URL" }
        components.user = nil
        components.password = nil
        components.query = nil
        components.fragment = nil
        return components.string ?? "unparseable URL"
    }
}

/// Sends the deliveries notify recorded: claims due rows (`FOR UPDATE SKIP LOCKED`, so replicas
/// share the work; a claim lapses after the timeout, so a crashed replica's rows are sent
/// again), sends up to `parallel` at once, and records each attempt: `delivered`, or retried
/// after the backoff (or the answer's `Retry-After`) on timeouts, connection errors, 408, 429
/// and 5xx, or `dead_lettered` after the last attempt or on another answer.
final class DeliveryWorker: Service, Sendable {
    let pool: PostgresPool
    let settings: NotifySettings
    let logger: Logger

    init(pool: PostgresPool, settings: NotifySettings, logger: Logger) {
        self.pool = pool
        self.settings = settings
        self.logger = logger
    }

    struct Due {
        var id: String
        var jobID: String
        var channel: String
        var payload: JSONValue
        var attempt: Int
        var callbackURL: String?
        var traceID: String?
    }

    /// The result of one attempt.
    enum Result: Equatable {
        case delivered(status: Int)
        case retry(status: Int?, error: String, after: Duration?)
        case failed(status: Int?, error: String)
    }

    func run() async throws {
        let stopping = StopFlag()
        await withGracefulShutdownHandler {
            var warned = false
            while !Task.isCancelled && !stopping.isSet {
                var claimed = 0
                do {
                    claimed = try await runOnce()
                    warned = false
                } catch {
                    if !warned { logger.warning("delivery worker cannot reach PostgreSQL", metadata: ["error": .string("\(type(of: error))")]) }
                    warned = true
                }
                if claimed == 0 { try? await Task.sleep(for: settings.pollInterval) }
            }
        } onGracefulShutdown: {
            stopping.set()
        }
    }

    /// Claims and sends one batch; answers how many it claimed.
    @discardableResult
    func runOnce() async throws -> Int {
        let lease = settings.timeout.components.seconds + 30
        let rows = try await pool.query("""
            UPDATE deliveries d SET attempts = d.attempts + 1, next_attempt_at = clock_timestamp() + make_interval(secs => \(lease)::int)
            FROM (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
                  ORDER BY next_attempt_at LIMIT \(settings.parallel)::int FOR UPDATE SKIP LOCKED) due
            WHERE d.id = due.id
            RETURNING d.id, d.job_id, d.channel, d.payload::text, d.attempts, d.trace_id
            """)
        let claimed = try rows.decode((String, String, String, String, Int, String?).self)
        let callbackJobs = Set(claimed.compactMap { $0.2 == "callback" ? $0.1 : nil })
        let callbacks = callbackJobs.isEmpty ? [:] : try await JobStore.callbackURLs(of: callbackJobs, pool: pool)
        let due = claimed.compactMap { id, job, channel, text, attempt, traceID -> Due? in
            guard let payload = try? JSONParser().parse(text) else { return nil }
            return Due(id: id, jobID: job, channel: channel, payload: payload, attempt: attempt, callbackURL: callbacks[job], traceID: traceID)
        }
        await withTaskGroup(of: Void.self) { group in
            for delivery in due {
                group.addTask {
                    let result = await self.attempt(delivery)
                    do {
                        try await self.record(result, of: delivery)
                    } catch {
                        self.logger.warning("delivery attempt not recorded; it is sent again when its claim lapses",
                                            metadata: ["delivery": .string(delivery.id), "error": .string("\(type(of: error))")])
                    }
                }
            }
        }
        return due.count
    }

    /// Sends one delivery once.
    func attempt(_ delivery: Due) async -> Result {
        guard let notice = JobNotice(delivery.payload) else {
            return .failed(status: nil, error: "stored payload is not a job notice")
        }
        switch delivery.channel {
        case "webhook", "callback":
            let url: String, policy: OutboundPolicy
            if delivery.channel == "webhook" {
                guard let configured = settings.webhookURL else { return .failed(status: nil, error: "SLUICE_WEBHOOK_URL is no longer set") }
                (url, policy) = (configured, settings.webhookPolicy)
            } else {
                guard let given = delivery.callbackURL else { return .failed(status: nil, error: "the job has no callback_url") }
                (url, policy) = (given, settings.callbacks)
            }
            let body = NotificationMessage.webhook(notice, deliveryID: delivery.id)
            let timestamp = Int64(Date().timeIntervalSince1970)
            // The upload's trace continues at the receiver (a new span id per attempt).
            let trace = delivery.traceID.map { ["traceparent: \(TraceContext.traceparent(traceID: $0))"] } ?? []
            return await post(url, body: body, headers: trace + [
                "Content-Type: application/json", "User-Agent: sluice-notify",
                "\(WebhookSignature.header): \(WebhookSignature.sign(body: body, timestamp: timestamp, secret: settings.secret))",
                "Sluice-Delivery: \(delivery.id)", "Sluice-Event: \(notice.type)", "Sluice-Attempt: \(delivery.attempt)",
            ], policy: policy)
        case "slack":
            guard let url = settings.slackWebhookURL else { return .failed(status: nil, error: "SLUICE_SLACK_WEBHOOK_URL is no longer set") }
            return await post(url, body: NotificationMessage.slack(notice), headers: ["Content-Type: application/json"], policy: settings.slackPolicy)
        case "email":
            guard let mail = settings.mail else { return .failed(status: nil, error: "SLUICE_SMTP_URL is no longer set") }
            let message = NotificationMessage.email(notice, from: mail.from, to: mail.to, messageID: delivery.id)
            do {
                try await settings.mailPolicy.sendMail(mail.url, from: mail.from, to: mail.to, message: message, tls: mail.tls,
                                                       timeout: settings.timeout, caFile: mail.caFile)
                return .delivered(status: 250)
            } catch let refusal as OutboundPolicy.Refusal {
                return refusal.isTransient ? .retry(status: nil, error: refusal.rawValue, after: nil) : .failed(status: nil, error: refusal.rawValue)
            } catch let error as CurlError {
                // SMTP answers that refuse (5xx) are not transient; everything else is tried again.
                let permanent = error.code == 55 || error.code == 67 || error.code == 78
                return permanent ? .failed(status: nil, error: error.description) : .retry(status: nil, error: error.description, after: nil)
            } catch {
                return .retry(status: nil, error: "\(type(of: error))", after: nil)
            }
        default:
            return .failed(status: nil, error: "unknown channel")
        }
    }

    /// POSTs through `policy`: a refused URL fails the delivery (retried when the host did not
    /// resolve), a 3xx is a failed delivery (never followed).
    func post(_ url: String, body: [UInt8], headers: [String], policy: OutboundPolicy) async -> Result {
        let answer: HTTPAnswer
        do {
            answer = try await policy.post(url, headers: headers, body: body, timeout: settings.timeout)
        } catch let refusal as OutboundPolicy.Refusal {
            return refusal.isTransient ? .retry(status: nil, error: refusal.rawValue, after: nil) : .failed(status: nil, error: refusal.rawValue)
        } catch let error as CurlError {
            return .retry(status: nil, error: error.description, after: nil)
        } catch {
            return .retry(status: nil, error: "\(type(of: error))", after: nil)
        }
        switch answer.status {
        case 200..<300:
            return .delivered(status: answer.status)
        case 408, 425, 429, 500...599:
            return .retry(status: answer.status, error: "HTTP \(answer.status)",
                          after: answer.retryAfter.flatMap { Self.retryAfter($0, now: Date()) })
        default:
            return .failed(status: answer.status, error: "HTTP \(answer.status)")
        }
    }

    /// `Retry-After` as seconds or an HTTP date, as a wait from `now` (never negative).
    static func retryAfter(_ value: String, now: Date) -> Duration? {
        if let seconds = Int64(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .milliseconds(max(0, Int64(date.timeIntervalSince(now) * 1000)))
    }

    /// When the next attempt may go: the answer's `Retry-After` (capped), else the backoff.
    func nextWait(after result: Result, attempt: Int) -> Duration {
        if case .retry(_, _, let after?) = result { return min(after, settings.maxRetryAfter) }
        return settings.retry.backoff(beforeAttempt: attempt + 1, unitRandom: Double.random(in: 0..<1))
    }

    /// `sluice_notify_deliveries_total{channel, result}`: attempts by channel and what came of
    /// them (`delivered`, `retried`, `dead_lettered`).
    static func count(_ channel: String, _ result: String) {
        Counter(label: "sluice_notify_deliveries_total", dimensions: [("channel", channel), ("result", result)]).increment()
    }

    func record(_ result: Result, of delivery: Due) async throws {
        switch result {
        case .delivered(let status):
            try await pool.query("""
                UPDATE deliveries SET status = 'delivered', last_status = \(status)::int, last_error = NULL, finished_at = clock_timestamp()
                WHERE id = \(delivery.id)::uuid
                """)
            Self.count(delivery.channel, "delivered")
            logger.debug("delivered", metadata: ["delivery": .string(delivery.id), "channel": .string(delivery.channel), "attempt": .stringConvertible(delivery.attempt)])
        case .retry(let status, let error, _) where settings.retry.shouldRetry(afterAttempt: delivery.attempt):
            let wait = nextWait(after: result, attempt: delivery.attempt)
            try await pool.query("""
                UPDATE deliveries SET last_status = \(status)::int, last_error = \(error),
                    next_attempt_at = clock_timestamp() + make_interval(secs => \(wait.seconds)::double precision)
                WHERE id = \(delivery.id)::uuid
                """)
            Self.count(delivery.channel, "retried")
            logger.info("delivery failed; trying again", metadata: [
                "delivery": .string(delivery.id), "channel": .string(delivery.channel), "attempt": .stringConvertible(delivery.attempt),
                "error": .string(error), "wait_ms": .stringConvertible(Int(wait.seconds * 1000)),
            ])
        case .retry(let status, let error, _), .failed(let status, let error):
            try await pool.query("""
                UPDATE deliveries SET status = 'dead_lettered', last_status = \(status)::int, last_error = \(error), finished_at = clock_timestamp()
                WHERE id = \(delivery.id)::uuid
                """)
            Self.count(delivery.channel, "dead_lettered")
            logger.error("delivery dead-lettered", metadata: [
                "delivery": .string(delivery.id), "channel": .string(delivery.channel), "attempts": .stringConvertible(delivery.attempt),
                "error": .string(error),
            ])
        }
    }
}
