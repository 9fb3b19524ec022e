import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import Sluice

/// Answers a request head the HTTP parser refuses — headers over the limits, a malformed
/// request line or header — with a problem document and closes the connection. Hummingbird
/// answers these with a bare `400` and no body, which tells a client nothing; this handler sits
/// between the HTTP codec and Hummingbird's handlers and answers first: `431 headers_too_large`
/// for headers over the limits, `400 malformed_request` for the rest.
///
/// An error while a request is open — after its head was passed on and before its response
/// ended (a body cut off, a broken chunked body, a bad head pipelined behind it) — goes on to
/// Hummingbird: the route reading the body must see it fail, or a truncated upload would look
/// complete, and responses must keep their order.
public final class ParserErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    /// Requests whose head was passed on and whose response has not ended.
    private var open = 0

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { open += 1 }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { open = max(0, open - 1) }
        context.write(data, promise: promise)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError, open == 0 else {
            context.fireErrorCaught(error)
            return
        }
        let problem = Self.problem(for: parserError)
        let body = problem.body.serializedBytes
        let head = HTTPResponse(status: problem.status, headerFields: [
            .contentType: "application/problem+json", .contentLength: String(body.count), .connection: "close",
        ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        // Answered: the connection ends here (Hummingbird sees it close, not the error).
        context.close(promise: nil)
    }

    /// The problem answering a parser error; never the request's content.
    static func problem(for error: HTTPParserError) -> Problem {
        switch error {
        case .headerOverflow:
            Problem(.init(code: 431, reasonPhrase: "Request Header Fields Too Large"), code: "headers_too_large",
                    detail: "the request's headers are over the server's limits of size or number")
        default:
            Problem(.badRequest, code: "malformed_request", detail: "the request is not valid HTTP/1.1")
        }
    }
}
