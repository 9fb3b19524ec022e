import Hummingbird
import NIOCore
import Sluice

/// An RFC 9457 problem answer (`application/problem+json`) with a stable `code`.
public struct Problem: Error, Sendable, ResponseGenerator {
    /// The HTTP status.
    public var status: HTTPResponse.Status
    /// The stable machine-readable code (`invalid_json`, `body_too_large`, …).
    public var code: String
    /// A sentence for people. Never personal data or internals.
    public var detail: String
    /// Extra members (`offset`, `line`, …).
    public var extra: JSONObject
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, …).
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, detail: String, extra: JSONObject = [:], headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra
        self.headers = headers
    }

    /// The problem's JSON body.
    public var body: JSONValue {
        var object: JSONObject = [
            "type": .string("https://sluice.dev/problems/\(code)"),
            "title": .string(status.reasonPhrase),
            "status": .int(Int64(status.code)),
            "code": .string(code),
            "detail": .string(detail),
        ]
        // The standard members win: an extra member can add, never replace them.
        for (key, value) in extra where object[key] == nil { object[key] = value }
        return .object(object)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body.serializedBytes)))
    }
}

/// Answers errors thrown by routes as problems: ``Problem``s as they are, Hummingbird's own
/// HTTP errors with their status, anything else as a 500 that names nothing internal.
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            return try problem.response(from: request, context: context)
        } catch let error as HTTPError {
            let code = error.status == .notFound ? "not_found" : error.status == .contentTooLarge ? "body_too_large" : "http_\(error.status.code)"
            return try Problem(error.status, code: code, detail: error.body ?? error.status.reasonPhrase)
                .response(from: request, context: context)
        } catch {
            context.logger.error("request failed", metadata: ["error_type": .string("\(type(of: error))")])
            return try Problem(.internalServerError, code: "internal_error", detail: "the request could not be completed")
                .response(from: request, context: context)
        }
    }
}

extension JSONValue: ResponseGenerator {
    /// The value as an `application/json` response with status 200.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONResponse(status: .ok, value: self).response
    }
}

/// A JSON response with a chosen status.
public struct JSONResponse: ResponseGenerator {
    public var status: HTTPResponse.Status
    public var value: JSONValue

    public init(status: HTTPResponse.Status, value: JSONValue) {
        self.status = status
        self.value = value
    }

    var response: Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: value.serializedBytes)))
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response { response }
}
