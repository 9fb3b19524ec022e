import Sluice

/// Turns each record into a row of its dataset's table. A dataset whose settings for transform
/// (its `steps.transform`, else transform's own `config`) hold `rules` is transformed by them
/// (see ``TransformRule``), with the plugins registered in the process; one without is
/// projected: each field to its column (``DatasetSpec/Field/column``). A record a rule cannot
/// transform (a failed cast, a failing plugin) is quarantined with the rule's code as reason.
public struct TransformFunction: EventFunction {
    let programs: PerDataset<DatasetTransform>

    public init(setup: PipelineSetup) throws {
        let manifest = setup.manifest, plugins = setup.dependencies.transformPlugins
        // The function's own rules, when it has some, are checked at start.
        _ = try TransformProgram(config: manifest.config, file: manifest.file, plugins: plugins)
        programs = PerDataset(datasets: setup.dependencies.datasets) { spec, _ in
            let settings = spec.settings(for: "transform", base: manifest.config)
            if settings["rules"] != nil {
                return .rules(try TransformProgram(config: settings, file: "datasets/\(spec.name).yaml: steps.transform", plugins: plugins))
            }
            return .projection(ColumnProjection(spec))
        }
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let transform = try await programs.plan(for: chunk)
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(chunk.events.count)
        for event in chunk.events {
            do throws(TransformFailure) {
                outcomes.append(.forward(Event(try transform.apply(to: event.value))))
            } catch {
                outcomes.append(.quarantine(reason: error.code, event: event, field: error.field.isEmpty ? nil : error.field))
            }
        }
        return outcomes
    }
}

/// How a dataset's records become rows.
enum DatasetTransform: Sendable {
    case rules(TransformProgram)
    case projection(ColumnProjection)

    func apply(to record: JSONValue) throws(TransformFailure) -> JSONValue {
        switch self {
        case .rules(let program): try program.apply(to: record)
        case .projection(let projection): projection.apply(to: record)
        }
    }
}

/// Each field of a dataset to its column: `{"reading": {"celsius": 21.5}}` → `{"celsius": 21.5}`.
struct ColumnProjection: Sendable {
    let fields: [(path: JSONPath, column: String)]

    init(_ spec: DatasetSpec) {
        fields = spec.fields.compactMap { field in field.column.map { (JSONPath(field.path), $0) } }
    }

    func apply(to record: JSONValue) -> JSONValue {
        var row: [(key: String, value: JSONValue)] = []
        row.reserveCapacity(fields.count)
        for field in fields {
            guard let value = record.value(at: field.path), value != .null else { continue }
            row.append((field.column, value))
        }
        return .object(JSONObject(uncheckedMembers: row))
    }
}
