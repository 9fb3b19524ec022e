import Logging
import Sluice
import SluiceFunctions
import Synchronization
import Testing

final class ManualClock: Sendable {
    let instant = Mutex(ContinuousClock.now)
    func advance(_ by: Duration) { instant.withLock { $0 += by } }
    var now: ContinuousClock.Instant { instant.withLock { $0 } }
}

final class Source: Sendable {
    let loads = Atomic<Int>(0)
    let failing = Atomic<Bool>(false)
    struct Down: Error {}

    func load() async throws -> LookupCache.Tables {
        let n = loads.add(1, ordering: .relaxed).newValue
        try await Task.sleep(for: .milliseconds(20))
        if failing.load(ordering: .relaxed) { throw Down() }
        return ["country": ["DE": "Germany", "V": "\(n)"], "device": ["mobile": "handheld"]]
    }
}

@Suite("Lookup cache and enrichment")
struct LookupCacheTests {
    @Test func reloadsOnlyAfterTheTTLAndSharesLoads() async throws {
        let clock = ManualClock(), source = Source()
        let cache = LookupCache(ttl: .seconds(60), now: { clock.now }, load: { try await source.load() })
        async let a = cache.current()
        async let b = cache.current()
        let (first, second) = try await (a, b)
        #expect(first == second)
        #expect(source.loads.load(ordering: .relaxed) == 1)
        clock.advance(.seconds(59))
        #expect(try await cache.current()["country"]?["V"] == "1")
        clock.advance(.seconds(2))
        #expect(try await cache.current()["country"]?["V"] == "2")
        #expect(source.loads.load(ordering: .relaxed) == 2)
    }

    @Test func anOutageWhileAReloadIsDueIsARetryableError() async throws {
        let clock = ManualClock(), source = Source()
        let cache = LookupCache(ttl: .seconds(60), now: { clock.now }, load: { try await source.load() })
        let enrich = EnrichFunction(cache: cache)
        let manifest = Manifest(name: "enrich", handler: "enrich", triggers: [.stream("enrich")], outputs: ["transform"])
        let invoker = FunctionInvoker(manifest: manifest, function: enrich, logger: Logger(label: "test"))
        let events = [
            Event(["context": ["device_type": "Mobile", "location": ["country": "de"]]]),
            Event(["context": ["device_type": "fridge", "location": ["country": "XX"]]]),
            Event(["payload": [:]]),
        ]
        let outcomes = try await invoker.invoke(Chunk(id: "1-0", events: events), attempt: 1)
        #expect(outcomes == [
            .forward(Event(["context": ["device_type": "Mobile", "location": ["country": "de", "country_name": "Germany"], "device_class": "handheld"]])),
            .forward(Event(["context": ["device_type": "fridge", "location": ["country": "XX", "country_name": nil], "device_class": nil]])),
            .forward(Event(["payload": [:], "context": ["location": ["country_name": nil], "device_class": nil]])),
        ])
        source.failing.store(true, ordering: .relaxed)
        clock.advance(.seconds(30))
        #expect(try await invoker.invoke(Chunk(id: "2-0", events: [events[0]]), attempt: 1).count == 1)  // still fresh
        clock.advance(.seconds(31))
        await #expect(throws: FunctionError.retryable("lookup_unavailable", "the lookup tables could not be loaded")) {
            _ = try await invoker.invoke(Chunk(id: "3-0", events: [events[0]]), attempt: 1)
        }
        source.failing.store(false, ordering: .relaxed)
        #expect(try await invoker.invoke(Chunk(id: "4-0", events: [events[0]]), attempt: 2).count == 1)
    }
}
