import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A document fetched for a key set: the body and how long the server says it may be kept.
public struct JWKSDocument: Sendable, Equatable {
    public var body: [UInt8]
    /// `Cache-Control: max-age`, when the response has one.
    public var maxAge: Duration?

    public init(body: [UInt8], maxAge: Duration? = nil) {
        self.body = body
        self.maxAge = maxAge
    }
}

/// Why a key set (or the discovery document naming it) could not be had. The description
/// names what went wrong, never a body or a secret, and is logged.
public struct JWKSFetchError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}

/// Fetches the documents a ``JWKSCache`` needs: a real HTTP client in the gateway, a table in
/// unit tests.
public protocol JWKSFetching: Sendable {
    /// The body of a `GET` of `url`.
    ///
    /// - Throws: ``JWKSFetchError`` when the server cannot be reached, does not answer in
    ///   time, answers anything but `200` (a redirect included) or sends a body over the limit.
    func fetch(_ url: String) async throws(JWKSFetchError) -> JWKSDocument

    /// Closes what the fetcher holds open; called once, when the key set's service ends.
    func shutdown() async
}

/// ``JWKSFetching`` with AsyncHTTPClient: one timeout for the whole request (connect included),
/// no redirects followed, the body refused past a size limit.
public final class JWKSHTTPFetcher: JWKSFetching {
    let timeout: Duration
    let maximumSize: Int
    /// Made on the first fetch, so a verifier that is built and never used holds no client.
    private let client = Mutex<(client: HTTPClient?, closed: Bool)>((nil, false))

    /// A fetcher whose requests each end within `timeout` and whose bodies are at most
    /// `maximumSize` bytes.
    public init(timeout: Duration = .seconds(5), maximumSize: Int = 1 << 20) {
        self.timeout = timeout
        self.maximumSize = maximumSize
    }

    private func httpClient() throws(JWKSFetchError) -> HTTPClient {
        let made: HTTPClient? = client.withLock { state in
            if state.closed { return nil }
            if let client = state.client { return client }
            var configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow,
                timeout: .init(connect: .init(timeout), read: .init(timeout)),
                decompression: .disabled)
            configuration.connectionPool = .init(idleTimeout: .seconds(60))
            let made = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            state.client = made
            return made
        }
        guard let made else { throw JWKSFetchError("the fetcher is shut down") }
        return made
    }

    public func fetch(_ url: String) async throws(JWKSFetchError) -> JWKSDocument {
        let client = try httpClient()
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        request.headers.add(name: "Accept", value: "application/jwk-set+json, application/json")
        request.headers.add(name: "User-Agent", value: "sluice-gateway")
        let deadline = NIODeadline.now() + .init(timeout)
        do {
            let response = try await client.execute(request, deadline: deadline)
            guard response.status == .ok else {
                let redirect = (300..<400).contains(Int(response.status.code))
                throw JWKSFetchError("HTTP \(response.status.code)\(redirect ? " (redirects are not followed)" : "")")
            }
            if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > maximumSize {
                throw JWKSFetchError("the body is \(length) bytes, over the limit of \(maximumSize)")
            }
            var body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: maximumSize)
            } catch is NIOTooManyBytesError {
                throw JWKSFetchError("the body is over the limit of \(maximumSize) bytes")
            }
            let maxAge = response.headers[canonicalForm: "cache-control"].lazy.compactMap(Self.maxAge).first
            return JWKSDocument(body: body.readBytes(length: body.readableBytes) ?? [], maxAge: maxAge)
        } catch let error as JWKSFetchError {
            throw error
        } catch let error as HTTPClientError {
            switch error {
            case .connectTimeout, .readTimeout, .deadlineExceeded, .writeTimeout:
                throw JWKSFetchError("no answer within \(timeout)")
            default:
                throw JWKSFetchError("the request failed (\(error))")
            }
        } catch {
            throw JWKSFetchError("the request failed (\(error))")
        }
    }

    /// The seconds of one `Cache-Control` directive of the form `max-age=N`.
    static func maxAge(_ directive: Substring) -> Duration? {
        let parts = directive.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, parts[0].lowercased() == "max-age", let seconds = Int64(parts[1]), seconds >= 0 else { return nil }
        return .seconds(seconds)
    }

    public func shutdown() async {
        let client = self.client.withLock { state in
            defer { state = (nil, true) }
            return state.client
        }
        try? await client?.shutdown()
    }
}
