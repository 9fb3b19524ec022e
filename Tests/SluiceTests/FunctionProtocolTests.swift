import Testing
@testable import Sluice
@testable import SluiceFunctions

/// Sluice's function protocol (docs/function-protocol.md): the request a process receives and
/// how each answer becomes outcomes or a retryable or permanent failure.
@Suite struct FunctionProtocolTests {
    let chunk = Chunk(id: "1700000000000-0", jobID: "job-1", traceID: "trace-1",
                      events: [Event(["id": "a"]), Event(["id": "b"]), Event(["id": "c"])],
                      dataset: DatasetReference(name: "orders", version: 2))

    func answer(_ value: JSONValue) throws(FunctionError) -> [Outcome] {
        try FunctionProtocol.outcomes(value.serializedBytes, for: chunk)
    }

    func failure(_ value: JSONValue) -> FunctionError? {
        do { _ = try answer(value); return nil } catch { return error }
    }

    @Test func theRequestCarriesTheEventsAndTheirContext() throws {
        let body = FunctionProtocol.request(chunk, function: "score", attempt: 3, deadlineMilliseconds: 1_700_000_010_000,
                                            config: ["threshold": 0.5])
        let request = try JSONParser().parse(body)
        #expect(request["protocol"] == 1)
        #expect(request["function"] == "score")
        #expect(request["chunk_id"] == "1700000000000-0")
        #expect(request["job_id"] == "job-1")
        #expect(request["trace_id"] == "trace-1")
        #expect(request["attempt"] == 3)
        #expect(request["deadline_ms"] == 1_700_000_010_000)
        #expect(request["dataset"] == "orders")
        #expect(request["config"] == ["threshold": 0.5])
        #expect(request["events"] == [["id": "a"], ["id": "b"], ["id": "c"]])
        // A chunk of no job or trace says so with null, and events with `events`.
        let bare = try JSONParser().parse(FunctionProtocol.request(Chunk(id: "1-0", events: []), function: "f", attempt: 1,
                                                                   deadlineMilliseconds: 0, config: [:]))
        #expect(bare["job_id"] == .null)
        #expect(bare["dataset"] == "events")
    }

    @Test func eachOutcomeKindIsRead() throws {
        let outcomes = try answer(["outcomes": [
            ["outcome": "forward", "event": ["id": "a", "score": 0.9]],
            ["outcome": "drop", "reason": "low_score"],
            ["outcome": "quarantine", "reason": "bad_amount", "field": "amount"],
        ]])
        #expect(outcomes == [
            .forward(Event(["id": "a", "score": 0.9])),
            .drop(reason: "low_score"),
            .quarantine(reason: "bad_amount", event: Event(["id": "c"]), field: "amount"),
        ])
        // A forward without an event passes the event on unchanged; an output is kept.
        let unchanged = try answer(["outcomes": [["outcome": "forward"], ["outcome": "forward", "output": "audit"], ["outcome": "forward", "output": nil]]])
        #expect(unchanged == [.forward(Event(["id": "a"])), .forward(Event(["id": "b"]), output: "audit"), .forward(Event(["id": "c"]))])
    }

    /// One event forwarded as several (a row and its line items): `events` in place of `event`.
    @Test func aForwardMayCarrySeveralEvents() throws {
        let outcomes = try answer(["outcomes": [
            ["outcome": "forward", "events": [["id": "a", "line": 1], ["id": "a", "line": 2]]],
            ["outcome": "forward", "events": [["id": "b"]], "output": "audit"],
            ["outcome": "drop", "reason": "empty"],
        ]])
        #expect(outcomes == [.fanOut([Event(["id": "a", "line": 1]), Event(["id": "a", "line": 2])]), .fanOut([Event(["id": "b"])], output: "audit"),
                             .drop(reason: "empty")])
        // None, not an array, or beside `event`: not the protocol's.
        for bad: JSONValue in [["outcome": "forward", "events": []], ["outcome": "forward", "events": ["id": "a"]],
                               ["outcome": "forward", "events": [["id": "a"]], "event": ["id": "a"]]] {
            #expect(failure(["outcomes": [bad, ["outcome": "forward"], ["outcome": "forward"]]])?.code == "bad_outcomes", "\(bad)")
        }
    }

    /// `set`: fields set over the event as it came, the rest kept, without resending it.
    @Test func aForwardMaySetFieldsOverTheEvent() throws {
        let chunk = Chunk(id: "1-0", events: [Event(["id": "a", "amount": 3]), Event(["id": "b", "tier": "x"]), Event("not an object")])
        let answer: JSONValue = ["outcomes": [
            ["outcome": "forward", "set": ["score": 0.5, "amount": 4]],
            ["outcome": "forward", "set": ["tier": nil], "output": "audit"],
            ["outcome": "drop", "reason": "text"],
        ]]
        let outcomes = try FunctionProtocol.outcomes(answer.serializedBytes, for: chunk)
        #expect(outcomes == [.forward(Event(["id": "a", "amount": 4, "score": 0.5])), .forward(Event(["id": "b", "tier": nil]), output: "audit"),
                             .drop(reason: "text")])
        // Not an object, beside event or events, or over an event that is not an object: not the protocol's.
        for bad: JSONValue in [["outcome": "forward", "set": [1]], ["outcome": "forward", "set": ["a": 1], "event": ["id": "a"]],
                               ["outcome": "forward", "set": ["a": 1], "events": [["id": "a"]]]] {
            #expect(failure(["outcomes": [bad, ["outcome": "forward"], ["outcome": "forward"]]])?.code == "bad_outcomes", "\(bad)")
        }
        let overText: JSONValue = ["outcomes": [["outcome": "forward"], ["outcome": "forward"], ["outcome": "forward", "set": ["a": 1]]]]
        #expect(throws: FunctionError.self) { try FunctionProtocol.outcomes(overText.serializedBytes, for: chunk) }
    }

    /// `sluice process`'s answer: an event forwarded as it came is a bare forward (the caller
    /// keeps its copy); a changed one, a named output and the other outcomes in full.
    @Test func aProcessAnswersAnUnchangedEventWithoutIt() throws {
        let bytes = FunctionProtocol.answer(.success([.forward(Event(["id": "a"])), .forward(Event(["id": "B"])), .drop(reason: "x")]), for: chunk)
        let answer = try JSONParser().parse(bytes)
        #expect(answer["outcomes"]?[0] == ["outcome": "forward"])
        #expect(answer["outcomes"]?[1] == ["outcome": "forward", "output": nil, "event": ["id": "B"]])
        #expect(answer["outcomes"]?[2] == ["outcome": "drop", "reason": "x"])
        // Read back, it is the same outcomes.
        #expect(try FunctionProtocol.outcomes(bytes, for: chunk) == [.forward(Event(["id": "a"])), .forward(Event(["id": "B"])), .drop(reason: "x")])
        let failed = try JSONParser().parse(FunctionProtocol.answer(.failure(.permanent("schema_mismatch", "no")), for: chunk))
        #expect(failed == ["dead_letter": ["code": "schema_mismatch", "message": "no"]])
    }

    @Test func theFunctionMayDeadLetterOrRetryTheWholeChunk() {
        let dead = failure(["dead_letter": ["code": "schema_mismatch", "message": "the model expects v2 rows"]])
        #expect(dead == .permanent("schema_mismatch", "the model expects v2 rows"))
        let retry = failure(["retry": ["code": "model_loading"]])
        #expect(retry == .retryable("model_loading", "the function gave no message"))
        // A code that could not be a counter's name is replaced by the protocol's own.
        #expect(failure(["dead_letter": ["code": "Bad Code!"]])?.code == "function_dead_lettered")
        #expect(failure(["retry": [:]])?.code == "function_retry")
    }

    @Test func anAnswerThatIsNotTheProtocolsIsPermanent() {
        let cases: [(JSONValue, String)] = [
            (["outcomes": [["outcome": "forward"]]], "1 outcomes for 3 events"),
            (["result": "ok"], "the answer has no outcomes, dead_letter or retry"),
            (["outcomes": [["outcome": "forward"], ["outcome": "explode"], ["outcome": "forward"]]], "outcomes[1].outcome must be forward, drop or quarantine"),
            (["outcomes": [["outcome": "forward"], ["outcome": "drop"], ["outcome": "forward"]]], "outcomes[1].reason must be 1 to 64 of a-z, 0-9, _, - and ."),
            (["outcomes": [["outcome": "drop", "reason": "Has Spaces"], ["outcome": "forward"], ["outcome": "forward"]]], "outcomes[0].reason must be 1 to 64 of a-z, 0-9, _, - and ."),
            (["outcomes": [["outcome": "forward", "output": 3], ["outcome": "forward"], ["outcome": "forward"]]], "outcomes[0].output is not a string"),
            (["outcomes": ["forward", "forward", "forward"]], "outcomes[0] has no outcome"),
            ([1, 2], "the answer is not a JSON object"),
        ]
        for (value, message) in cases {
            #expect(failure(value) == .permanent("bad_outcomes", message), "\(value)")
        }
        do {
            _ = try FunctionProtocol.outcomes(Array("<html>oops</html>".utf8), for: chunk)
            Issue.record("HTML was read as outcomes")
        } catch {
            #expect(error == .permanent("bad_outcomes", "the answer is not a JSON object"))
        }
    }

    /// The status table of docs/function-protocol.md.
    @Test func statusesMapToRetryableAndPermanentFailures() {
        for status in [408, 425, 429, 500, 502, 503, 504, 507, 599] {
            #expect(FunctionProtocol.failure(status: status) == .retryable("function_failed", "the function answered \(status)"))
        }
        for status in [201, 204, 301, 400, 401, 403, 404, 409, 413, 422, 501, 505] {
            #expect(FunctionProtocol.failure(status: status) == .permanent("function_rejected", "the function answered \(status)"))
        }
    }
}
