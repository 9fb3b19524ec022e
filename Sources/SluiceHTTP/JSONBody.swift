import Hummingbird
import NIOCore
import Sluice

extension Request {
    /// The body parsed as JSON, read up to `limit` bytes: `413 body_too_large` (with `limit`)
    /// above it, `400 invalid_json` (with `offset` and `error`) when it does not parse.
    public func decodeJSON(limit: Int) async throws -> JSONValue {
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
}
