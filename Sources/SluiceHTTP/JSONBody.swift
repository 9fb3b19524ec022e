import Hummingbird
import NIOCore
import Sluice

extension Request {
    /// The body parsed as JSON, read up to `limit` bytes: `415 unsupported_media_type` unless
    /// `Content-Type` says JSON, `413 body_too_large` (with `limit`) above the limit,
    /// `400 invalid_json` (with `offset` and `error`) when it does not parse.
    public func decodeJSON(limit: Int) async throws -> JSONValue {
        guard Self.isJSON(contentType: headers[.contentType]) else {
            throw Problem(.unsupportedMediaType, code: "unsupported_media_type",
                          detail: "send the body as application/json (Content-Type)")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch {
            throw Problem(.contentTooLarge, code: "body_too_large", detail: "the body is larger than \(limit) bytes",
                          extra: ["limit": .int(Int64(limit))])
        }
        do {
            return try buffer.withUnsafeReadableBytes { try JSONParser().parse($0) }
        } catch let error as JSONParseError {
            throw Problem(.badRequest, code: "invalid_json", detail: "the body is not valid JSON (\(error.code.rawValue))",
                          extra: ["offset": .int(Int64(error.offset)), "error": .string(error.code.rawValue)])
        }
    }

    /// Whether a `Content-Type` names JSON: `application/json` or a `+json` type, parameters
    /// (`; charset=utf-8`) aside. A missing type is not JSON: the caller must say what it sends.
    static func isJSON(contentType: String?) -> Bool {
        guard let type = contentType?.mediaType else { return false }
        return type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json"))
    }
}
