import SluiceRuntime

/// Scores each row's risk by the value of its purchase (0 to 1, 1 at `high_value` and above)
/// and drops sign-ups, which carry no value to score.
public struct Risk: CodableFunction {
    public struct Config: Decodable, Sendable {
        var high_value: Double
    }

    /// The fields of a row the function reads (the others pass through untouched).
    public struct Row: Decodable, Sendable {
        var event_type: String
        var properties: Properties?

        struct Properties: Decodable, Sendable {
            var value: Double?
        }
    }

    /// The field the function sets on each row it forwards.
    public struct Scored: Codable, Sendable, Equatable {
        public var risk: Double
        public init(risk: Double) { self.risk = risk }
    }

    let highValue: Double

    public init(config: Config) throws {
        guard config.high_value > 0 else {
            throw FunctionError.permanent("bad_config", "high_value must be above 0")
        }
        highValue = config.high_value
    }

    public func process(_ row: Row, context: FunctionContext) async throws -> CodableOutcome<Scored> {
        if row.event_type == "signup" { return .drop(reason: "not_scored") }
        let value = row.properties?.value ?? 0
        return .forward(Scored(risk: (min(1, value / highValue) * 100).rounded() / 100))
    }
}
