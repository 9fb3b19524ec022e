import Foundation
import Sluice
import SluiceHTTP

/// Sluice's function protocol, version 1 (docs/function-protocol.md): what the runtime POSTs to a
/// function's process for one chunk, and how it reads the answer. Pure: no I/O here.
public enum FunctionProtocol {
    public static let version = 1

    /// The request body for `chunk`: the events (already through the function's middleware) and
    /// what the process may want to know about them.
    public static func request(_ chunk: Chunk, function: String, attempt: Int, deadlineMilliseconds: Int64, config: JSONValue) -> [UInt8] {
        var body = context(chunk, function: function, attempt: attempt, deadlineMilliseconds: deadlineMilliseconds, config: config)
        body["events"] = .array(chunk.events.map(\.value))
        return JSONValue.object(body).serializedBytes
    }

    /// What a request says about the chunk besides its events (a Lambda event's `sluice`).
    static func context(_ chunk: Chunk, function: String, attempt: Int, deadlineMilliseconds: Int64, config: JSONValue) -> JSONObject {
        var body: JSONObject = [
            "protocol": .int(Int64(version)),
            "function": .string(function),
            "chunk_id": .string(chunk.id),
            "attempt": .int(Int64(attempt)),
            "deadline_ms": .int(deadlineMilliseconds),
            "dataset": .string(chunk.datasetName),
            "config": config,
        ]
        body["job_id"] = chunk.jobID.map(JSONValue.string) ?? .null
        body["trace_id"] = chunk.traceID.map(JSONValue.string) ?? .null
        return body
    }

    /// A request as a process reads it (``request(_:function:attempt:deadlineMilliseconds:config:)``'s
    /// inverse): the chunk, the attempt and the deadline. Nil when the body is not one.
    public static func parseRequest(_ body: [UInt8]) -> (chunk: Chunk, attempt: Int, deadlineMilliseconds: Int64?)? {
        guard let value = try? JSONParser().parse(body), case .object(let object) = value,
              case .array(let events)? = object["events"], case .string(let id)? = object["chunk_id"] else { return nil }
        var chunk = Chunk(id: id, events: events.map(Event.init))
        if case .string(let job)? = object["job_id"] { chunk.jobID = job }
        if case .string(let trace)? = object["trace_id"] { chunk.traceID = trace }
        if case .string(let dataset)? = object["dataset"], dataset != DatasetReference.events {
            chunk.dataset = DatasetReference(name: dataset, version: 0)
        }
        let attempt = object["attempt"]?.intValue.map(Int.init) ?? 1
        return (chunk, max(1, attempt), object["deadline_ms"]?.intValue)
    }

    /// The answer of a process for `outcomes`, or for a failure of the whole chunk.
    /// An event forwarded as it came (equal to `chunk`'s at its position) is answered as a bare
    /// `{"outcome": "forward"}`: the caller keeps its own copy, and neither side encodes or
    /// parses it again.
    public static func answer(_ result: Result<[Outcome], FunctionError>, for chunk: Chunk? = nil) -> [UInt8] {
        switch result {
        case .success(let outcomes):
            var items: [JSONValue] = []
            items.reserveCapacity(outcomes.count)
            for (index, outcome) in outcomes.enumerated() {
                if case .forward(let event, nil) = outcome, let chunk, index < chunk.events.count, chunk.events[index] == event {
                    items.append(["outcome": "forward"])
                } else {
                    items.append(RuntimeRoutes.describe(outcome))
                }
            }
            return JSONValue.object(["outcomes": .array(items)]).serializedBytes
        case .failure(let error):
            let failure: JSONValue = ["code": .string(error.code), "message": .string(error.message)]
            return JSONValue.object([error.kind == .permanent ? "dead_letter" : "retry": failure]).serializedBytes
        }
    }

    /// What an HTTP status means when it is not 200: retryable for 408, 425, 429 and 5xx but 501
    /// and 505 (the process may answer later); permanent for every other status. The body is not
    /// kept: a crashing handler's page may quote the events.
    public static func failure(status: Int) -> FunctionError {
        switch status {
        case 408, 425, 429, 500, 502, 503, 504, 506...599:
            return .retryable("function_failed", "the function answered \(status)")
        default:
            return .permanent("function_rejected", "the function answered \(status)")
        }
    }

    /// The outcomes a 200 answer holds, one per event of `chunk`, in order.
    /// - Throws: ``FunctionError`` — `bad_outcomes` (permanent) for an answer that is not the
    ///   protocol's; the function's own `dead_letter` (permanent) or `retry` (retryable) error.
    public static func outcomes(_ body: [UInt8], for chunk: Chunk) throws(FunctionError) -> [Outcome] {
        guard let answer = try? JSONParser().parse(body), case .object(let object) = answer else {
            throw .permanent("bad_outcomes", "the answer is not a JSON object")
        }
        if let dead = object["dead_letter"] {
            throw .permanent(code(dead["code"], default: "function_dead_lettered"), message(dead["message"]))
        }
        if let retry = object["retry"] {
            throw .retryable(code(retry["code"], default: "function_retry"), message(retry["message"]))
        }
        guard case .array(let items)? = object["outcomes"] else {
            throw .permanent("bad_outcomes", "the answer has no outcomes, dead_letter or retry")
        }
        guard items.count == chunk.events.count else {
            throw .permanent("bad_outcomes", "\(items.count) outcomes for \(chunk.events.count) events")
        }
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            outcomes.append(try outcome(item, event: chunk.events[index], index: index))
        }
        return outcomes
    }

    static func outcome(_ item: JSONValue, event: Event, index: Int) throws(FunctionError) -> Outcome {
        guard case .object(let object) = item, case .string(let kind)? = object["outcome"] else {
            throw .permanent("bad_outcomes", "outcomes[\(index)] has no outcome")
        }
        switch kind {
        case "forward":
            var output: String?
            if let value = object["output"], value != .null {
                guard case .string(let name) = value else { throw .permanent("bad_outcomes", "outcomes[\(index)].output is not a string") }
                output = name
            }
            if let many = object["events"] {
                // Several events in its place (a row and its line items, say).
                guard object["event"] == nil, object["set"] == nil, case .array(let events) = many, !events.isEmpty else {
                    throw .permanent("bad_outcomes", "outcomes[\(index)].events must be a non-empty array (and comes without event); to pass nothing on, drop it")
                }
                return .fanOut(events.map(Event.init), output: output)
            }
            if let fields = object["set"] {
                // These fields set over the event as it came (the others unchanged).
                guard object["event"] == nil, case .object(let set) = fields else {
                    throw .permanent("bad_outcomes", "outcomes[\(index)].set must be an object (and comes without event or events)")
                }
                guard case .object(var merged) = event.value else {
                    throw .permanent("bad_outcomes", "outcomes[\(index)].set applies to an object event; send event instead")
                }
                for (key, value) in set { merged[key] = value }
                return .forward(Event(.object(merged)), output: output)
            }
            // No `event`: the event goes on as it came.
            let forwarded = object["event"].map(Event.init) ?? event
            return .forward(forwarded, output: output)
        case "drop":
            return .drop(reason: try reason(object["reason"], index: index))
        case "quarantine":
            var field: String?
            if case .string(let name)? = object["field"] { field = String(name.prefix(200)) }
            return .quarantine(reason: try reason(object["reason"], index: index), event: object["event"].map(Event.init) ?? event, field: field)
        default:
            throw .permanent("bad_outcomes", "outcomes[\(index)].outcome must be forward, drop or quarantine")
        }
    }

    /// A reason becomes a counter's name (`dropped.REASON`): 1 to 64 of a-z, 0-9, `_`, `-`, `.`.
    static func reason(_ value: JSONValue?, index: Int) throws(FunctionError) -> String {
        guard case .string(let text)? = value, isCode(text) else {
            throw .permanent("bad_outcomes", "outcomes[\(index)].reason must be 1 to 64 of a-z, 0-9, _, - and .")
        }
        return text
    }

    /// Whether `text` is a reason or error code: 1 to 64 of a-z, 0-9, `_`, `-`, `.`.
    public static func isCode(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 64
            && text.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F || $0 == 0x2D || $0 == 0x2E }
    }

    static func code(_ value: JSONValue?, default fallback: String) -> String {
        if case .string(let text)? = value, isCode(text) { return text }
        return fallback
    }

    static func message(_ value: JSONValue?) -> String {
        if case .string(let text)? = value { return String(text.prefix(500)) }
        return "the function gave no message"
    }
}
