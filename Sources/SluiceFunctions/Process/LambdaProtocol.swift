import Sluice

/// How a chunk looks to a handler written for AWS Lambda (`runtime.protocol: lambda`), and how
/// its result becomes outcomes. Pure: no I/O here (docs/function-protocol.md, "Lambda").
///
/// The event is an SQS batch, the shape Lambda's partial-batch handlers are written for: one
/// record per event, its `body` the event as JSON text, its `messageId` unique in the chunk.
/// Sluice's own fields are under `sluice`. The result may be:
/// - `{"batchItemFailures": [{"itemIdentifier": ID}]}`: the events named are quarantined with
///   reason `function_item_failed`, every other one goes on unchanged (a partial batch);
/// - the function protocol's own answer (`outcomes`, `dead_letter`, `retry`), to change events;
/// - anything else (`null`, a string, `{}`): every event goes on unchanged.
public enum LambdaProtocol {
    /// The reason an event a handler named in `batchItemFailures` is quarantined with.
    public static let itemFailedReason = "function_item_failed"

    /// The record id of the event at `index` of the chunk `chunkID`.
    public static func messageID(chunkID: String, index: Int) -> String { "\(chunkID)/\(index)" }

    /// The event a Lambda handler receives for `chunk`.
    public static func event(_ chunk: Chunk, function: String, stream: String, attempt: Int, deadlineMilliseconds: Int64,
                             sentMilliseconds: Int64, config: JSONValue) -> [UInt8] {
        let source = "arn:sluice:stream:local:0:\(stream)"
        var records: [JSONValue] = []
        records.reserveCapacity(chunk.events.count)
        for (index, event) in chunk.events.enumerated() {
            let id = messageID(chunkID: chunk.id, index: index)
            records.append([
                "messageId": .string(id),
                "receiptHandle": .string(id),
                "body": .string(event.value.serializedString),
                "attributes": [
                    "ApproximateReceiveCount": .string(String(attempt)),
                    "SentTimestamp": .string(String(sentMilliseconds)),
                    "ApproximateFirstReceiveTimestamp": .string(String(sentMilliseconds)),
                ],
                "messageAttributes": [:],
                "eventSource": "sluice:stream",
                "eventSourceARN": .string(source),
                "awsRegion": "local",
            ])
        }
        let sluice = FunctionProtocol.context(chunk, function: function, attempt: attempt,
                                              deadlineMilliseconds: deadlineMilliseconds, config: config)
        return JSONValue.object(["Records": .array(records), "sluice": .object(sluice)]).serializedBytes
    }

    /// The outcomes a handler's result means for `chunk`.
    /// - Throws: ``FunctionError`` — `bad_outcomes` (permanent) for a partial-batch answer that
    ///   names an item not in the chunk; the protocol answer's own errors.
    public static func outcomes(_ result: [UInt8], for chunk: Chunk) throws(FunctionError) -> [Outcome] {
        let unchanged = chunk.events.map { Outcome.forward($0) }
        guard let value = try? JSONParser().parse(result), case .object(let object) = value else { return unchanged }
        if object["outcomes"] != nil || object["dead_letter"] != nil || object["retry"] != nil {
            return try FunctionProtocol.outcomes(result, for: chunk)
        }
        guard let failures = object["batchItemFailures"], failures != .null else { return unchanged }
        guard case .array(let items) = failures else {
            throw .permanent("bad_outcomes", "batchItemFailures is not an array")
        }
        var indexByID: [String: Int] = [:]
        for index in chunk.events.indices { indexByID[messageID(chunkID: chunk.id, index: index)] = index }
        var outcomes = unchanged
        for (position, item) in items.enumerated() {
            guard case .string(let id)? = item["itemIdentifier"], let index = indexByID[id] else {
                throw .permanent("bad_outcomes", "batchItemFailures[\(position)].itemIdentifier names no record of the chunk")
            }
            outcomes[index] = .quarantine(reason: itemFailedReason, event: chunk.events[index])
        }
        return outcomes
    }
}
