import CHiredis
import Glibc
import Synchronization

/// One blocking hiredis connection.
///
/// Every method blocks the calling thread: call them only from ``RedisClient``'s thread pool,
/// never from Swift's cooperative pool. The context pointer lives in a `Mutex`, so at most one
/// thread uses it at a time. A connection that fails is closed and reopened on next use.
public final class RedisConnection: Sendable {
    private let context: Mutex<UnsafeMutablePointer<redisContext>?>
    private let endpoint: RedisEndpoint
    private let timeout: Duration

    /// Creates a connection, connecting lazily on first use.
    /// - Parameter timeout: connect and command timeout; must exceed any `BLOCK` used.
    public init(endpoint: RedisEndpoint, timeout: Duration = .seconds(5)) {
        self.endpoint = endpoint
        self.timeout = timeout
        self.context = Mutex(nil)
    }

    deinit {
        context.withLock { ctx in
            if let c = ctx { redisFree(c) }
            ctx = nil
        }
    }

    /// Whether the connection is open (a later command may still find it broken).
    public var isOpen: Bool { context.withLock { $0 != nil } }

    /// Whether an idle connection can be reused: it is open and the server has not closed it
    /// meanwhile (a non-blocking peek finds neither end-of-file nor stray data). A connection
    /// found dead is closed. Never blocks.
    public var isReusable: Bool {
        context.withLock { ctx in
            guard let c = ctx else { return false }
            var byte: UInt8 = 0
            let n = recv(c.pointee.fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { return true }
            redisFree(c)
            ctx = nil
            return false
        }
    }

    /// Closes the connection; the next command reopens it.
    public func close() {
        context.withLock { ctx in
            if let c = ctx { redisFree(c) }
            ctx = nil
        }
    }

    /// Runs one command and answers its reply (an error reply is returned, not thrown).
    /// - Throws: ``RedisError`` `.unavailable` when the server cannot be reached or the
    ///   connection broke; the connection is then closed.
    public func command(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        try pipeline([arguments])[0]
    }

    /// Sends several commands at once and answers their replies in order.
    public func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisReply] {
        let result: Result<[RedisReply], RedisError> = context.withLock { ctx in
            do throws(RedisError) {
                if ctx == nil { ctx = try Self.open(endpoint, timeout: timeout) }
                let c = ctx!
                for arguments in commands {
                    let status = Self.withArgv(arguments) { argc, argv, lengths in
                        redisAppendCommandArgv(c, argc, argv, lengths)
                    }
                    guard status == REDIS_OK else { throw Self.failure(c) }
                }
                var replies: [RedisReply] = []
                replies.reserveCapacity(commands.count)
                for _ in commands {
                    var raw: UnsafeMutableRawPointer?
                    guard redisGetReply(c, &raw) == REDIS_OK, let raw else { throw Self.failure(c) }
                    let reply = raw.assumingMemoryBound(to: redisReply.self)
                    replies.append(Self.convert(reply))
                    freeReplyObject(raw)
                }
                return .success(replies)
            } catch {
                if let c = ctx { redisFree(c) }
                ctx = nil
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func failure(_ c: UnsafeMutablePointer<redisContext>) -> RedisError {
        let message = withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return RedisError(.unavailable, message.isEmpty ? "connection lost" : message)
    }

    private static func open(_ endpoint: RedisEndpoint, timeout: Duration) throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        let ms = max(timeout.milliseconds, 1)
        let tv = timeval(tv_sec: Int(ms / 1000), tv_usec: Int((ms % 1000) * 1000))
        guard let c = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw RedisError(.unavailable, "cannot allocate a connection")
        }
        if c.pointee.err != 0 {
            let error = failure(c)
            redisFree(c)
            throw RedisError(.unavailable, "cannot connect to \(endpoint): \(error.message)")
        }
        _ = redisSetTimeout(c, tv)
        var setup: [[RedisArgument]] = []
        if let password = endpoint.password, !password.isEmpty { setup.append(["AUTH", RedisArgument(password)]) }
        if endpoint.database != 0 { setup.append(["SELECT", RedisArgument(endpoint.database)]) }
        for arguments in setup {
            let raw = withArgv(arguments) { argc, argv, lengths in redisCommandArgv(c, argc, argv, lengths) }
            guard let raw else {
                let error = failure(c)
                redisFree(c)
                throw error
            }
            let reply = convert(raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            if case .error(let message) = reply {
                redisFree(c)
                // The server's message for AUTH never contains the password.
                throw RedisError(.unavailable, "connection setup refused: \(message)")
            }
        }
        return c
    }

    private static func withArgv<R>(
        _ arguments: [RedisArgument],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        let total = arguments.reduce(0) { $0 + $1.bytes.count }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(total, 1)) { storage in
            withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: arguments.count) { argv in
                withUnsafeTemporaryAllocation(of: Int.self, capacity: arguments.count) { lengths in
                    var offset = 0
                    for (index, argument) in arguments.enumerated() {
                        argument.bytes.withUnsafeBufferPointer { src in
                            src.withMemoryRebound(to: CChar.self) { chars in
                                if let base = chars.baseAddress, !chars.isEmpty {
                                    (storage.baseAddress! + offset).initialize(from: base, count: chars.count)
                                }
                            }
                        }
                        argv[index] = UnsafePointer(storage.baseAddress! + offset)
                        lengths[index] = argument.bytes.count
                        offset += argument.bytes.count
                    }
                    return body(Int32(arguments.count), argv.baseAddress!, UnsafePointer(lengths.baseAddress!))
                }
            }
        }
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            guard let str = r.str else { return .string([]) }
            return .string(Array(UnsafeRawBufferPointer(start: str, count: r.len)))
        case REDIS_REPLY_STATUS:
            guard let str = r.str else { return .status("") }
            return .status(String(decoding: UnsafeRawBufferPointer(start: str, count: r.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            guard let str = r.str else { return .error("") }
            return .error(String(decoding: UnsafeRawBufferPointer(start: str, count: r.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let element = r.element[i] { elements.append(convert(element)) } else { elements.append(.null) }
            }
            return .array(elements)
        default:
            return .null
        }
    }
}
