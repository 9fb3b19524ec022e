import Foundation
import Logging
import NIOPosix
import Sluice
import SluicePostgres
import SluiceRedis
@testable import SluiceFunctions
import SluicePrivacy
import Testing

/// The consent cache against real PostgreSQL and Redis: it answers from memory while its
/// listener follows the change stream, and an announced change reaches every book at once.
@Suite("Consent book", .serialized)
struct ConsentBookIntegrationTests {
    @Test func anAnnouncedChangeReachesEveryBookWithinASecond() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let databaseURL = environment["SLUICE_DATABASE_URL"], let redisURL = environment["SLUICE_REDIS_URL"] else {
            throw IntegrationSetupError("SLUICE_DATABASE_URL and SLUICE_REDIS_URL are not set: run the suite with `make test`")
        }
        let threadPool = NIOThreadPool(numberOfThreads: 6)
        threadPool.start()
        let pool = PostgresPool(url: databaseURL, threadPool: threadPool, maxConnections: 3)
        try await Migrator(pool: pool, migrations: PipelineSchema.migrations, logger: Logger(label: "test")).migrate()
        var endpoint = try RedisEndpoint(url: redisURL)
        endpoint.database = 10
        let redis = RedisClient(endpoint: endpoint, threadPool: threadPool)
        try await redis.send(["FLUSHDB"])
        let keys = StreamKeys()
        let subject = PIIMasker(operators: [:], key: Array("integration-test-pseudonym-key".utf8)).pseudonymousUserID(UUID().uuidString)
        func book() -> ConsentBook { ConsentBook(pool: pool, redis: redis, keys: keys, logger: Logger(label: "test")) }
        let books = [book(), book()]
        let listeners = books.map { book in Task { try await book.listener.run() } }
        defer { for listener in listeners { listener.cancel() } }
        let started = ContinuousClock.now
        while !books.allSatisfy(\.isFollowing) {
            try #require(ContinuousClock.now - started < .seconds(5), "the listeners did not start")
            try await Task.sleep(for: .milliseconds(20))
        }

        // Nothing recorded: each book reads it once and keeps it.
        for book in books {
            #expect(try await book.records(of: [subject]) == [subject: []])
            #expect(book.cachedSubjects == 1)
        }
        // A change that is not announced is not seen: the books answer from memory.
        try await pool.query("INSERT INTO consents (subject, purpose, granted, source) VALUES (\(subject), 'analytics', false, 'api')")
        for book in books { #expect(try await book.records(of: [subject]) == [subject: []]) }

        // Announced, it reaches both books within a second.
        let announced = ContinuousClock.now
        try await ConsentBook.announce(subject, redis: redis, keys: keys)
        for book in books {
            while try await book.records(of: [subject])[subject]?.first?.granted != false {
                try #require(ContinuousClock.now - announced < .seconds(1), "the change did not arrive within a second")
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        let records = try await books[0].records(of: [subject])[subject] ?? []
        #expect(records.map(\.purpose) == ["analytics"])
        #expect(!ConsentRule.allows(recorded: records, carried: true, purpose: "analytics", unknown: .allow))

        // A book whose listener stopped trusts nothing in memory: it reads PostgreSQL.
        listeners[1].cancel()
        while books[1].isFollowing {
            try #require(ContinuousClock.now - announced < .seconds(10), "the listener did not stop")
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(books[1].cachedSubjects == 0)
        try await pool.query("UPDATE consents SET granted = true WHERE subject = \(subject)")
        #expect(try await books[1].records(of: [subject])[subject]?.first?.granted == true)
        #expect(books[1].cachedSubjects == 0)
        try await pool.query("DELETE FROM consents WHERE subject = \(subject)")
        try await threadPool.shutdownGracefully()
    }
}
