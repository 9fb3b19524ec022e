import Sluice
@testable import SluiceRedis
import Testing

/// What an acknowledgement writes for each outcome of a chunk: the rule the atomic
/// forward-and-ack script carries out (the script itself is proven against Redis in the
/// integration and end-to-end suites).
@Suite("Acknowledgement plan")
struct AcknowledgementPlanTests {
    let keys = StreamKeys(hashTag: "t")

    func manifest(outputs: [String] = ["a", "b"], countsAs: String? = nil, maxChunkBytes: Int? = nil) -> Manifest {
        var manifest = Manifest(name: "f", handler: "h", triggers: [.stream("f")], outputs: outputs)
        manifest.countsAs = countsAs
        if let maxChunkBytes { manifest.maxChunkBytes = maxChunkBytes }
        return manifest
    }

    /// The events of the appends to `stream`, decoded as a consumer would.
    func events(_ plan: AcknowledgementPlan, to stream: String) throws -> [JSONValue] {
        try plan.appends.filter { $0.stream == keys.stream(stream) }
            .flatMap { try ChunkCodec.decode(id: "0-1", fields: $0.fields).events.map(\.value) }
    }

    @Test func eachOutcomeWritesItsEntriesAndCounters() throws {
        let chunk = Chunk(id: "1-0", jobID: "job-1", traceID: "trace-1", events: [
            Event(["id": "e1"]), Event(["id": "e2"]), Event(["id": "e3"]), Event(["id": "e4"]), Event(["id": "e5"]),
        ])
        let plan = AcknowledgementPlan(manifest: manifest(), chunk: chunk, outcomes: [
            .forward(Event(["id": "e1"])),
            .forward(Event(["id": "e2"]), output: "b"),
            .drop(reason: "stale"),
            .drop(reason: "stale"),
            .quarantine(reason: "missing_field", event: Event(["id": "e5"])),
        ], keys: keys)
        // A forward goes to every output, or only to the one it names.
        #expect(try events(plan, to: "a") == [["id": "e1"]])
        #expect(try events(plan, to: "b") == [["id": "e1"], ["id": "e2"]])
        // A quarantined event goes to the quarantine stream with its reason and the function.
        #expect(try events(plan, to: "quarantine") == [["reason": "missing_field", "function": "f", "event": ["id": "e5"]]])
        #expect(plan.appends.count == 3)
        // Drops write nothing but their counter; every appended chunk keeps the job and trace.
        for append in plan.appends {
            let decoded = try ChunkCodec.decode(id: "0-1", fields: append.fields)
            #expect(decoded.jobID == "job-1")
            #expect(decoded.traceID == "trace-1")
        }
        #expect(plan.counterKey == keys.job("job-1"))
        #expect(plan.counters.map { "\($0.0)=\($0.1)" } == [
            "fn.f.in=5", "fn.f.forwarded=2", "dropped.stale=2", "quarantined.missing_field=1",
        ])
        #expect(plan.honourJobState)
    }

    /// A fan-out forwards every event it carries and counts the ones it added, so that the job
    /// waits for them; the middleware's filters keep or drop them one by one.
    @Test func aFanOutForwardsEachEventAndCountsTheAddedOnes() throws {
        let chunk = Chunk(id: "1-0", jobID: "job-1", events: [Event(["id": "o1"]), Event(["id": "o2"]), Event(["id": "o3"])])
        var restricted = Outcome.fanOut([Event(["id": "o3", "n": 1, "country": "KP"]), Event(["id": "o3", "n": 2, "country": "DE"])])
        restricted.keepForwarded(where: { $0.value["country"] != "KP" }, otherwise: "geo_restricted")
        #expect(restricted == .fanOut([Event(["id": "o3", "n": 2, "country": "DE"])]))
        var gone = Outcome.fanOut([Event(["country": "KP"])])
        gone.keepForwarded(where: { $0.value["country"] != "KP" }, otherwise: "geo_restricted")
        #expect(gone == .drop(reason: "geo_restricted"))
        let plan = AcknowledgementPlan(manifest: manifest(outputs: ["a"]), chunk: chunk, outcomes: [
            .fanOut([Event(["id": "o1", "n": 1]), Event(["id": "o1", "n": 2]), Event(["id": "o1", "n": 3])]),
            .forward(Event(["id": "o2"])),
            restricted,
        ], keys: keys)
        #expect(try events(plan, to: "a") == [["id": "o1", "n": 1], ["id": "o1", "n": 2], ["id": "o1", "n": 3], ["id": "o2"], ["id": "o3", "n": 2, "country": "DE"]])
        #expect(plan.counters.map { "\($0.0)=\($0.1)" } == ["fn.f.in=3", "fn.f.forwarded=5", "added=2"])
    }

    /// A chunk routed along its dataset's chain: events forwarded without a named output go to
    /// the route instead of the manifest's outputs; a named output still goes where it says.
    @Test func aRouteReplacesTheManifestOutputs() throws {
        let chunk = Chunk(id: "1-0", jobID: "job-1", events: [Event(["id": "e1"]), Event(["id": "e2"])],
                          dataset: DatasetReference(name: "orders", version: 3))
        let plan = AcknowledgementPlan(manifest: manifest(outputs: ["enrich", "audit"], countsAs: nil), chunk: chunk,
                                       outcomes: [.forward(Event(["id": "e1"])), .forward(Event(["id": "e2"]), output: "audit")],
                                       keys: keys, routes: ["score"])
        #expect(plan.appends.map(\.stream) == [keys.stream("score"), keys.stream("audit")])
        #expect(try events(plan, to: "score") == [["id": "e1"]])
        #expect(try events(plan, to: "audit") == [["id": "e2"]])
        #expect(try ChunkCodec.decode(id: "0-1", fields: plan.appends[0].fields).dataset == DatasetReference(name: "orders", version: 3))
    }

    @Test func aTerminalStageCountsWhatItForwards() {
        let chunk = Chunk(id: "1-0", jobID: "job-1", events: [Event(["id": "e1"]), Event(["id": "e2"])])
        let plan = AcknowledgementPlan(manifest: manifest(outputs: [], countsAs: "loaded"), chunk: chunk,
                                       outcomes: [.forward(Event(["id": "e1"])), .drop(reason: "duplicate")], keys: keys)
        #expect(plan.appends.isEmpty)
        #expect(plan.counters.map { "\($0.0)=\($0.1)" } == ["fn.f.in=2", "fn.f.forwarded=1", "dropped.duplicate=1", "loaded=1"])
        // Nothing forwarded: no terminal count at all, not a zero.
        let none = AcknowledgementPlan(manifest: manifest(outputs: [], countsAs: "loaded"), chunk: chunk,
                                       outcomes: [.drop(reason: "duplicate"), .drop(reason: "duplicate")], keys: keys)
        #expect(!none.counters.contains { $0.0 == "loaded" })
    }

    @Test func theQuarantineRecorderKeepsChunksOfEndedJobs() {
        let chunk = Chunk(id: "1-0", jobID: "job-1", events: [Event(["id": "e1"])])
        let plan = AcknowledgementPlan(manifest: manifest(outputs: [], countsAs: "quarantined"), chunk: chunk,
                                       outcomes: [.forward(Event(["id": "e1"]))], keys: keys)
        #expect(!plan.honourJobState)
    }

    @Test func aChunkWithoutAJobWritesNoCounters() throws {
        let chunk = Chunk(id: "1-0", events: [Event(["id": "e1"])])
        let plan = AcknowledgementPlan(manifest: manifest(), chunk: chunk, outcomes: [.forward(Event(["id": "e1"]))], keys: keys)
        #expect(plan.counters.isEmpty)
        #expect(!plan.honourJobState)
        #expect(try events(plan, to: "a") == [["id": "e1"]])
    }

    @Test func outputsLargerThanAChunkAreSplitAcrossEntriesOfOneAcknowledgement() throws {
        let big = String(repeating: "x", count: 400)
        let inputs = (0..<10).map { Event(["id": .string("e\($0)"), "pad": .string(big)]) }
        let chunk = Chunk(id: "1-0", jobID: "job-1", events: inputs)
        let plan = AcknowledgementPlan(manifest: manifest(outputs: ["a"], maxChunkBytes: 1_500), chunk: chunk,
                                       outcomes: inputs.map { .forward($0) }, keys: keys)
        #expect(plan.appends.count > 1)
        for append in plan.appends {
            let size = append.fields.reduce(0) { $0 + $1.1.count }
            #expect(size <= 1_500 + 200, "an entry stays near max_chunk_bytes")
        }
        #expect(try events(plan, to: "a") == inputs.map(\.value), "every event, once, in order")
    }

    /// One event may become at most `fan_out.per_event` events, and a chunk's fan-outs at most
    /// `fan_out.per_chunk`: past either, the event as it came is quarantined whole as
    /// `fan_out_too_large` and none of what it became is written (issue 31, finding 12).
    @Test func fanOutsPastTheirLimitsAreQuarantinedWhole() throws {
        var limited = manifest(outputs: ["a"])
        limited.maxFanOutPerEvent = 3
        limited.maxFanOutPerChunk = 5
        let chunk = Chunk(id: "1-0", jobID: "job-1", traceID: "t", events: [
            Event(["order": "o1"]), Event(["order": "o2"]), Event(["order": "o3"]), Event(["order": "o4"]),
        ])
        func items(_ order: String, _ count: Int) -> [Event] { (0..<count).map { Event(["order": .string(order), "item": .int(Int64($0))]) } }
        let plan = AcknowledgementPlan(manifest: limited, chunk: chunk, outcomes: [
            .fanOut(items("o1", 3)),   // at the per-event limit: written
            .fanOut(items("o2", 4)),   // past it: quarantined whole
            .fanOut(items("o3", 3)),   // 3 + 3 > 5 for the chunk: quarantined whole
            .fanOut(items("o4", 2)),   // 3 + 2 = 5: written
        ], keys: keys)
        #expect(try events(plan, to: "a") == items("o1", 3).map(\.value) + items("o4", 2).map(\.value))
        #expect(try events(plan, to: "quarantine") == [
            ["reason": "fan_out_too_large", "function": "f", "event": ["order": "o2"]],
            ["reason": "fan_out_too_large", "function": "f", "event": ["order": "o3"]],
        ])
        #expect(plan.counters.map { "\($0.0)=\($0.1)" } == [
            "fn.f.in=4", "fn.f.forwarded=5", "added=3", "quarantined.fan_out_too_large=2",
        ])
        // The defaults: a thousand per event, twenty thousand per chunk.
        #expect(Manifest(name: "f", handler: "h").maxFanOutPerEvent == 1000)
        #expect(Manifest(name: "f", handler: "h").maxFanOutPerChunk == 20_000)
    }
}
