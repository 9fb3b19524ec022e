import Foundation
import SluiceFunctions

/// A function over typed values instead of JSON: Sluice decodes each event as `Input` (an event
/// that does not decode is quarantined with `missing_field` or `wrong_type` and the field's path),
/// calls ``process(_:context:)``, and encodes what it forwards. The manifest's `config` is
/// decoded as `Config` once, when the function is built. Register it with
/// ``SluiceApplication/register(_:_:)``; test it with SluiceTesting's `FunctionTester`.
///
/// ```swift
/// struct FraudScore: CodableFunction {
///     struct Config: Decodable, Sendable { var limit: Double }
///     struct Order: Decodable, Sendable { var order_id: String; var amount: Double }
///     struct Scored: Encodable, Sendable { var fraud_score: Double }  // set over the event's fields
///     let limit: Double
///     init(config: Config) { limit = config.limit }
///     func process(_ order: Order, context: FunctionContext) async throws -> CodableOutcome<Scored> {
///         let score = min(1, order.amount / limit)
///         return score >= 1 ? .drop(reason: "over_limit") : .forward(Scored(fraud_score: score))
///     }
/// }
/// ```
public protocol CodableFunction: Sendable {
    /// An event, as the function reads it.
    associatedtype Input: Decodable & Sendable
    /// What the function forwards.
    associatedtype Output: Encodable & Sendable
    /// The manifest's `config`, decoded (``NoConfig``: none).
    associatedtype Config: Decodable & Sendable = NoConfig

    /// Builds the function from its manifest's `config`.
    init(config: Config) throws

    /// Decides one event. Throwing fails the whole chunk (retried; a ``FunctionError`` says
    /// whether it is retryable or permanent).
    func process(_ input: Input, context: FunctionContext) async throws -> CodableOutcome<Output>
}

/// What a ``CodableFunction`` decided for one event.
public enum CodableOutcome<Output: Encodable & Sendable>: Sendable {
    /// Pass the event on with `output`'s fields set over it (the fields `Output` does not
    /// declare are kept), to the manifest's `output` named or the next function of the chain.
    case forward(Output, output: String? = nil)
    /// Pass `output` on as the whole event (fields it does not declare are gone).
    case replace(Output, output: String? = nil)
    /// Pass several events on in its place, each the event with one value's fields set over
    /// it (a row and its line items, say); the job waits for every one. Empty: a drop.
    case fanOut([Output], output: String? = nil)
    /// Drop the event, with a reason code (1–64 of a-z, 0-9, `_`, `-`, `.`), counted in the job.
    case drop(reason: String)
    /// Set the event aside in the quarantine (as it came), with a reason code and the field at fault.
    case quarantine(reason: String, field: String? = nil)
}

extension CodableOutcome {
    /// Pass `output` on.
    public static func forward(_ output: Output) -> CodableOutcome { .forward(output, output: nil) }
}

/// The `Config` of a function that has none: any `config` (or none) decodes to it.
public struct NoConfig: Decodable, Sendable {
    public init() {}
    public init(from decoder: any Decoder) throws {}
}

/// A ``CodableFunction`` as an event function: decoding, the outcomes, encoding.
public struct CodableEventFunction<F: CodableFunction>: EventFunction {
    public let function: F

    /// Builds the function with its manifest's `config`.
    /// - Throws: ``ManifestError`` naming `config` when it does not decode as `F.Config`.
    public init(manifest: Manifest) throws {
        try self.init(config: manifest.config, file: manifest.file)
    }

    /// Builds the function with `config` (a manifest's `config`, from `file`).
    /// - Throws: ``ManifestError`` naming `config` when it does not decode as `F.Config`.
    public init(config: JSONValue, file: String = "function.yaml") throws {
        let decoded: F.Config
        do {
            decoded = try CodableEvents.decoder.decode(F.Config.self, from: Data(config.serializedBytes))
        } catch let error as DecodingError {
            let (_, path) = CodableEvents.reason(error)
            throw ManifestError(.badValue, file: file, key: path.isEmpty ? "config" : "config.\(path)",
                                message: "does not fit \(F.self)'s configuration: \(CodableEvents.describe(error))")
        }
        function = try F(config: decoded)
    }

    public init(function: F) { self.function = function }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(chunk.events.count)
        for event in chunk.events {
            let input: F.Input
            do {
                input = try CodableEvents.decoder.decode(F.Input.self, from: Data(event.value.serializedBytes))
            } catch let error as DecodingError {
                let (reason, path) = CodableEvents.reason(error)
                outcomes.append(.quarantine(reason: reason, event: event, field: path.isEmpty ? nil : path))
                continue
            }
            switch try await function.process(input, context: context) {
            case .forward(let output, let name):
                outcomes.append(.forward(try Self.merge(output, over: event), output: name))
            case .fanOut(let values, let name):
                outcomes.append(values.isEmpty ? .drop(reason: "fan_out_empty")
                                : .fanOut(try values.map { try Self.merge($0, over: event) }, output: name))
            case .replace(let output, let name):
                outcomes.append(.forward(Event(try JSONParser().parse(Array(CodableEvents.encoder.encode(output)))), output: name))
            case .drop(let reason):
                guard FunctionProtocol.isCode(reason) else { throw FunctionError.permanent("bad_outcomes", "drop reason '\(reason.prefix(70))' is not 1 to 64 of a-z, 0-9, _, - and .") }
                outcomes.append(.drop(reason: reason))
            case .quarantine(let reason, let field):
                guard FunctionProtocol.isCode(reason) else { throw FunctionError.permanent("bad_outcomes", "quarantine reason '\(reason.prefix(70))' is not 1 to 64 of a-z, 0-9, _, - and .") }
                outcomes.append(.quarantine(reason: reason, event: event, field: field))
            }
        }
        return outcomes
    }
}

extension CodableEventFunction {
    /// `output`'s fields set over `event` (or `output` alone when either is not an object).
    static func merge(_ output: F.Output, over event: Event) throws -> Event {
        let encoded = try JSONParser().parse(Array(CodableEvents.encoder.encode(output)))
        guard case .object(let fields) = encoded, case .object(var merged) = event.value else { return Event(encoded) }
        for (key, value) in fields { merged[key] = value }
        return Event(.object(merged))
    }
}

/// How typed functions read and write events: timestamps as ISO 8601 (with or without
/// fractions of a second), keys as they are.
public enum CodableEvents {
    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? Date(text, strategy: .iso8601) { return date }
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 timestamp")
        }
        return decoder
    }

    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }

    /// The reason code and field path of a decoding failure: `missing_field` for a key that is
    /// absent or null where a value is needed, `wrong_type` for anything else.
    static func reason(_ error: DecodingError) -> (String, String) {
        switch error {
        case .keyNotFound(let key, let context):
            return ("missing_field", path(context.codingPath + [key]))
        case .valueNotFound(_, let context):
            return ("missing_field", path(context.codingPath))
        case .typeMismatch(_, let context), .dataCorrupted(let context):
            return ("wrong_type", path(context.codingPath))
        @unknown default:
            return ("wrong_type", "")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "'\(key.stringValue)' is missing"
        case .valueNotFound(_, _): "a value is null"
        case .typeMismatch(let type, _): "a value is not \(type)"
        case .dataCorrupted(let context): context.debugDescription
        @unknown default: "\(error)"
        }
    }

    static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            .reduce(into: "") { $0 += $1.hasPrefix("[") || $0.isEmpty ? $1 : ".\($1)" }
    }
}
