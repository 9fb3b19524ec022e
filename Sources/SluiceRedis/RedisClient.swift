import NIOPosix
import Synchronization

/// An async Redis client: a pool of blocking hiredis connections driven from an
/// `NIOThreadPool`, so that no hiredis call ever runs on Swift's cooperative pool.
public final class RedisClient: Sendable {
    /// Where the server is.
    public let endpoint: RedisEndpoint
    private let threadPool: NIOThreadPool
    private let idle: Mutex<[RedisConnection]>
    private let maxIdle: Int
    private let timeout: Duration

    /// Creates a client. Connections open lazily.
    /// - Parameters:
    ///   - threadPool: a started pool for blocking calls; the caller shuts it down.
    ///   - timeout: connect and command timeout; must exceed any `BLOCK` a caller uses.
    public init(endpoint: RedisEndpoint, threadPool: NIOThreadPool, maxIdle: Int = 8, timeout: Duration = .seconds(5)) {
        self.endpoint = endpoint
        self.threadPool = threadPool
        self.idle = Mutex([])
        self.maxIdle = maxIdle
        self.timeout = timeout
    }

    /// Runs `body` with a pooled connection on the thread pool.
    /// - Throws: what `body` throws; ``RedisError`` `.unavailable` when Redis cannot be reached.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (RedisConnection) throws -> T) async throws -> T {
        var reused: RedisConnection?
        while reused == nil, let candidate = idle.withLock({ $0.popLast() }) {
            if candidate.isReusable { reused = candidate }  // one the server closed is dropped
        }
        let connection = reused ?? RedisConnection(endpoint: endpoint, timeout: timeout)
        let result: Result<T, any Error>
        do {
            result = .success(try await threadPool.runIfActive { try body(connection) })
        } catch {
            result = .failure(error)
        }
        if connection.isOpen {
            idle.withLock { pool in
                if pool.count < maxIdle { pool.append(connection) }
            }
        }
        return try result.get()
    }

    /// Sends one command.
    /// - Throws: ``RedisError`` `.unavailable` or, for an error reply, `.command`.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RedisReply {
        let reply = try await withConnection { try $0.command(arguments) }
        if case .error(let message) = reply { throw RedisError(.command, message) }
        return reply
    }

    /// Sends several commands in one round trip; error replies are returned in place.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RedisReply] {
        try await withConnection { try $0.pipeline(commands) }
    }

    /// Whether Redis answers `PING` now.
    public func ping() async -> Bool {
        (try? await send(["PING"])) == .status("PONG")
    }

    /// Closes the idle connections.
    public func closeIdle() {
        let connections = idle.withLock { pool in
            defer { pool.removeAll() }
            return pool
        }
        for connection in connections { connection.close() }
    }
}
