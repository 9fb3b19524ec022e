import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus
import Sluice

/// The routes every function process serves: `/health/live`, `/health/ready`, `/metrics`, and
/// for event functions `POST /invoke` (the process's only event function) and
/// `POST /invoke/{name}` (any event function it runs).
public struct RuntimeRoutes: Sendable {
    /// The event functions the process runs, by name.
    public var invokers: [String: FunctionInvoker]
    /// Readiness probes.
    public var health: HealthCheck
    /// The registry `/metrics` prints.
    public var metrics: PrometheusCollectorRegistry
    /// The largest `POST /invoke` body accepted.
    public var maxInvokeBody: Int
    /// Whether `/metrics` is among the routes (not when a port of its own serves it).
    public var servesMetrics: Bool

    public init(invokers: [String: FunctionInvoker], health: HealthCheck, metrics: PrometheusCollectorRegistry,
                maxInvokeBody: Int = 16 << 20, servesMetrics: Bool = true) {
        self.invokers = invokers
        self.health = health
        self.metrics = metrics
        self.maxInvokeBody = maxInvokeBody
        self.servesMetrics = servesMetrics
    }

    /// `registry` in Prometheus' text format.
    public static func metricsResponse(_ registry: PrometheusCollectorRegistry) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }

    /// Adds the routes to `router`.
    public func add(to router: Router<SluiceRequestContext>) {
        router.get("/health/live") { _, _ -> JSONValue in ["status": "live"] }
        router.get("/health/ready") { _, _ -> JSONResponse in
            let results = await health.run()
            var checks = JSONObject()
            for (name, ok) in results { checks[name] = .bool(ok) }
            let ready = results.allSatisfy(\.1)
            return JSONResponse(status: ready ? .ok : .serviceUnavailable,
                                value: ["status": .string(ready ? "ready" : "not_ready"), "checks": .object(checks)])
        }
        if servesMetrics {
            let metrics = self.metrics
            router.get("/metrics") { _, _ -> Response in Self.metricsResponse(metrics) }
        }
        let targets = invokers.mapValues { (invoker: $0, metrics: FunctionMetrics(function: $0.manifest.name)) }
        let limit = maxInvokeBody
        if targets.count == 1, let only = targets.values.first {
            router.post("/invoke") { request, _ -> JSONResponse in
                try await Self.invoke(only.invoker, metrics: only.metrics, request: request, limit: limit)
            }
        }
        router.post("/invoke/{name}") { request, context -> JSONResponse in
            let name = try context.parameters.require("name")
            guard let target = targets[name] else {
                throw Problem(.notFound, code: "unknown_function", detail: "this process runs no event function of that name")
            }
            return try await Self.invoke(target.invoker, metrics: target.metrics, request: request, limit: limit)
        }
    }

    static func invoke(_ invoker: FunctionInvoker, metrics: FunctionMetrics, request: Request, limit: Int) async throws -> JSONResponse {
        guard case .array(let items) = try await request.decodeJSON(limit: limit) else {
            throw Problem(.badRequest, code: "invalid_events", detail: "the body must be a JSON array of events")
        }
        let chunk = Chunk(id: "invoke-\(UUID().uuidString.lowercased())",
                          traceID: TraceContext.traceID(in: request.headers),
                          events: items.map(Event.init))
        let started = ContinuousClock.now
        do {
            let outcomes = try await invoker.invoke(chunk, attempt: 1)
            metrics.recordInvocation(viaStream: false, duration: .now - started, outcomes: outcomes)
            return JSONResponse(status: .ok, value: [
                "function": .string(invoker.manifest.name),
                "outcomes": .array(outcomes.map(Self.describe)),
            ])
        } catch {
            metrics.recordInvocation(viaStream: false, duration: .now - started, outcomes: [])
            throw Problem(error.kind == .retryable ? .serviceUnavailable : .unprocessableContent,
                          code: error.code, detail: error.message,
                          extra: ["retryable": .bool(error.kind == .retryable)])
        }
    }

    /// The JSON form of an outcome, as `POST /invoke` and `sluice invoke` print it.
    public static func describe(_ outcome: Outcome) -> JSONValue {
        switch outcome {
        case .forward(let event, let output):
            return ["outcome": "forward", "output": output.map(JSONValue.string) ?? .null, "event": event.value]
        case .fanOut(let events, let output):
            return ["outcome": "forward", "output": output.map(JSONValue.string) ?? .null, "events": .array(events.map(\.value))]
        case .drop(let reason):
            return ["outcome": "drop", "reason": .string(reason)]
        case .quarantine(let reason, let event, let field):
            var answer: JSONObject = ["outcome": "quarantine", "reason": .string(reason), "event": event.value]
            if let field { answer["field"] = .string(field) }
            return .object(answer)
        }
    }
}

/// W3C trace context helpers. Ids are ASCII hex only: `Character.isHexDigit` also accepts
/// full-width digits, which PostgreSQL's `trace_id` check (and every tracer) refuses.
public enum TraceContext {
    /// The `traceparent` header.
    public static let header = HTTPField.Name("traceparent")!

    /// Whether `text` is `count` ASCII hex digits (lowercase only when `lowercase`), not all zero.
    static func isHex(_ text: Substring, count: Int, lowercase: Bool) -> Bool {
        text.utf8.count == count && text.utf8.contains { $0 != UInt8(ascii: "0") } && text.utf8.allSatisfy {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
                || (!lowercase && (UInt8(ascii: "A")...UInt8(ascii: "F")).contains($0))
        }
    }

    /// The trace id of a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), lowercased, if well-formed.
    public static func traceID(fromTraceparent header: String) -> String? {
        let parts = header.split(separator: "-")
        guard parts.count == 4, isHex(parts[1], count: 32, lowercase: false) else { return nil }
        return parts[1].lowercased()
    }

    /// The trace id of the request's `traceparent` header, if it has a well-formed one.
    public static func traceID(in headers: HTTPFields) -> String? {
        headers[header].flatMap(traceID(fromTraceparent:))
    }

    /// A new random trace id (32 hex digits).
    public static func newTraceID() -> String { RandomHex.make(words: 2) }

    /// `header` when it is a well-formed version-00 `traceparent`: lowercase hex, ids not all
    /// zero.
    public static func validTraceparent(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", isHex(parts[1], count: 32, lowercase: true), isHex(parts[2], count: 16, lowercase: true),
              parts[3].utf8.count == 2, parts[3].utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) })
        else { return nil }
        return header
    }

    /// `id` when it is a trace id as `traceparent` carries it: 32 lowercase hex digits, not all zero.
    public static func validTraceID(_ id: String) -> String? {
        isHex(Substring(id), count: 32, lowercase: true) ? id : nil
    }

    /// A `traceparent` continuing trace `traceID` with a new span id.
    public static func traceparent(traceID: String) -> String { "00-\(traceID)-\(RandomHex.make(words: 1))-01" }

    /// A new `traceparent` starting a sampled trace.
    public static func newTraceparent() -> String { "00-\(newTraceID())-\(RandomHex.make(words: 1))-01" }
}
