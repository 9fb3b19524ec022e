import ArgumentParser
import Foundation
import Sluice
import SluiceFunctions
import SluicePostgres
import SluiceRedis

struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect and re-queue a function's dead letters.",
        subcommands: [List.self, Redrive.self])

    /// Dead letters read at once: each is a whole chunk (up to its writer's `max_chunk_bytes`),
    /// so a page of 16 holds at most 64 MiB at the default.
    static let page = 16

    /// The dead-letter fields that are not part of the chunk.
    static let metadataFields: Set<String> = ["function", "source_id", "error_code", "error_kind", "error", "attempts", "failed_at"]

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Print a function's dead letters, one JSON object per line, oldest first.")

        @Argument(help: "The function's name.") var name: String
        @Option(help: "At most this many.") var limit: Int = 1000

        func run() async throws {
            let context = try DLQContext(name: name)
            try await context.run {
                var cursor = "-", left = limit
                while left > 0 {
                    let entries = try await context.redis.range(stream: context.keys.deadLetters(name), start: cursor, count: min(left, DLQCommand.page))
                    printEntries(entries)
                    left -= entries.count
                    guard entries.count == DLQCommand.page, let last = entries.last else { break }
                    cursor = "(" + last.id
                }
            }
        }

        func printEntries(_ entries: [StreamEntry]) {
            for entry in entries {
                var object: JSONObject = ["id": .string(entry.id)]
                for field in ["source_id", "job", "trace", "error_code", "error_kind", "error"] {
                    if let value = entry.field(field) { object[field] = .string(value) }
                }
                object["events"] = .int(Int64(entry.field("n") ?? "") ?? 0)
                object["attempts"] = .int(Int64(entry.field("attempts") ?? "") ?? 0)
                if let ms = entry.field("failed_at").flatMap(Double.init) {
                    object["failed_at"] = .string(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: ms / 1000)))
                }
                print(JSONValue.object(object).serializedString)
            }
        }
    }

    struct Redrive: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "redrive",
            abstract: "Move a function's dead letters back onto its input stream (each exactly once).")

        @Argument(help: "The function's name.") var name: String
        @Option(help: "Only this dead letter (an id from `dlq list`).") var id: String?

        func run() async throws {
            let context = try DLQContext(name: name)
            try await context.run { try await redrive(context) }
        }

        func redrive(_ context: DLQContext) async throws {
            guard let input = context.manifest.inputStream else {
                throw CommandFailure("\(name) has no stream trigger to redrive to")
            }
            let dlq = context.keys.deadLetters(name)
            var moved = 0
            var cursor = "-"
            while true {
                let entries = try await context.redis.range(stream: dlq, start: cursor, count: DLQCommand.page)
                for entry in entries where id == nil || entry.id == id {
                    var fields = entry.fields.filter { !DLQCommand.metadataFields.contains($0.0) }
                    // The chunk keeps its identity (deduplication marks, ledgers) in its new entry.
                    if !fields.contains(where: { $0.0 == "origin" }), let source = entry.field("source_id") {
                        fields.insert(("origin", Array(source.utf8)), at: max(0, fields.count - 1))
                    }
                    if try await context.jobs.redrive(function: name, entryID: entry.id, to: context.keys.stream(input), fields: fields,
                                                      jobID: entry.field("job"), events: Int(entry.field("n") ?? "") ?? 0) {
                        moved += 1
                    }
                }
                guard entries.count == DLQCommand.page, let last = entries.last else { break }
                cursor = "(" + last.id
            }
            // Audited like a change through the API: who (the operating-system user), what, how many.
            var detail: JSONObject = ["chunks": .int(Int64(moved)), "to": .string(input)]
            if let id { detail["id"] = .string(id) }
            try await AuditEntry(actor: "cli:\(ProcessInfo.processInfo.environment["USER"] ?? "unknown")", action: "redriveDeadLetters",
                                 resource: "dlq/\(name)", detail: .object(detail)).write(to: context.postgres)
            print("redrove \(moved) chunk\(moved == 1 ? "" : "s") to \(input)")
        }
    }
}

/// What the dlq commands share: the manifest, a Redis client and a PostgreSQL pool.
struct DLQContext {
    let manifest: Manifest
    let redis: RedisClient
    let postgres: PostgresPool
    let keys: StreamKeys
    let jobs: JobStore
    let threadPool: NIOThreadPoolHandle

    init(name: String) throws {
        let configuration = Environment.configuration()
        let logger = Environment.bootstrapLogging(configuration)
        manifest = try ManifestLoader(functionsDirectory: configuration.functionsDirectory).load(name)
        threadPool = NIOThreadPoolHandle()
        redis = RedisClient(endpoint: try RedisEndpoint(url: configuration.redisURL), threadPool: threadPool.pool)
        postgres = PostgresPool(url: configuration.databaseURL, threadPool: threadPool.pool, maxConnections: 1)
        keys = StreamKeys(hashTag: configuration.hashTag)
        jobs = JobStore(pool: postgres, redis: redis, keys: keys, logger: logger)
    }

    func shutdown() async {
        redis.closeIdle()
        try? await threadPool.pool.shutdownGracefully()
    }

    /// Runs `body`, then shuts the clients down whether it threw or not.
    func run<T>(_ body: () async throws -> T) async throws -> T {
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        await shutdown()
        return try result.get()
    }
}

import NIOPosix

/// A started one-thread pool for short CLI commands.
struct NIOThreadPoolHandle {
    let pool: NIOThreadPool
    init() {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }
}
