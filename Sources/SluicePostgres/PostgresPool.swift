import Logging
import NIOPosix
import Synchronization

/// A small pool of libpq connections whose blocking calls run on an `NIOThreadPool`.
///
/// Connections are lent through ``withConnection(_:)`` and ``withTransaction(_:)``, never
/// returned to callers. At most `maxConnections` exist; further callers wait their turn.
public final class PostgresPool: Sendable {
    private struct State {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The connection URL. Not printed: it may hold a password.
    let url: String
    private let threadPool: NIOThreadPool
    private let maxConnections: Int
    private let state = Mutex(State())

    /// Creates a pool. Connections open on first use.
    /// - Parameter threadPool: a started pool for the blocking calls; the caller shuts it down.
    public init(url: String, threadPool: NIOThreadPool, maxConnections: Int = 4) {
        self.url = url
        self.threadPool = threadPool
        self.maxConnections = max(1, maxConnections)
    }

    /// Runs `body` with a connection, on the thread pool.
    /// - Throws: ``PostgresError`` `.unavailable` when no connection can be made, or what
    ///   `body` throws. A connection that broke is discarded, not reused.
    @discardableResult
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        await acquireSlot()
        let reused = state.withLock { $0.idle.popLast() }
        let url = self.url
        do {
            let (connection, value) = try await threadPool.runIfActive { () throws -> (PostgresConnection, T) in
                let connection = try reused ?? PostgresConnection(url: url)
                do {
                    return (connection, try body(connection))
                } catch {
                    throw FailedWith(connection: connection, error: error)
                }
            }
            release(connection)
            return value
        } catch let failure as FailedWith {
            release(failure.connection)
            throw failure.error
        } catch {
            release(nil)
            throw error
        }
    }

    /// Runs `body` inside `BEGIN` … `COMMIT`; rolls back when it throws.
    @discardableResult
    public func withTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withConnection { connection in
            try connection.executeUnparameterized("BEGIN")
            do {
                let value = try body(connection)
                try connection.executeUnparameterized("COMMIT")
                return value
            } catch {
                try? connection.executeUnparameterized("ROLLBACK")
                throw error
            }
        }
    }

    /// Runs one statement, its interpolated values bound as parameters.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await withConnection { try $0.query(query) }
    }

    /// Whether the server answers `SELECT 1` now.
    public func ping() async -> Bool {
        (try? await query("SELECT 1").scalar(Int.self)) == 1
    }

    private struct FailedWith: Error, @unchecked Sendable {
        // Carries the connection back to the pool from the thread pool; the connection is
        // itself Sendable and the error is only rethrown.
        let connection: PostgresConnection
        let error: any Error
    }

    private func acquireSlot() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.open < maxConnections {
                    state.open += 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    private func release(_ connection: PostgresConnection?) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let connection, connection.isHealthy { state.idle.append(connection) }
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }  // the slot passes on
            state.open -= 1
            return nil
        }
        waiter?.resume()
    }
}
