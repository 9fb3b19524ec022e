import Sluice
import SluicePostgres

/// Adds looked-up values to events: `context.location.country_name` from the country code and
/// `context.device_class` from the device type, from tables in PostgreSQL (`lookup_countries`,
/// `lookup_device_classes`) cached for `config.cache_ttl` (default 60s). A key that is not in
/// a table leaves the field null; a lookup outage is the retryable error `lookup_unavailable`.
public struct EnrichFunction: EventFunction {
    let cache: LookupCache
    /// The datasets, whose chain may leave enrich out (their records then pass unchanged).
    let datasets: DatasetStore?

    public init(setup: PipelineSetup) throws {
        let manifest = setup.manifest
        let ttl = try manifest.configDuration("cache_ttl", default: .seconds(60))
        let pool = setup.dependencies.postgres
        cache = LookupCache(ttl: ttl) { try await Self.loadTables(pool) }
        datasets = setup.dependencies.datasets
    }

    /// An enrich function over tables from `cache` (tests).
    public init(cache: LookupCache) {
        self.cache = cache
        datasets = nil
    }

    static func loadTables(_ pool: PostgresPool) async throws -> LookupCache.Tables {
        try await pool.withConnection { connection in
            var tables: LookupCache.Tables = [:]
            let queries: [(String, PostgresQuery)] = [("country", "SELECT code, name FROM lookup_countries"),
                                                      ("device", "SELECT device_type, device_class FROM lookup_device_classes")]
            for (name, query) in queries {
                var table: [String: String] = [:]
                for (key, value) in try connection.query(query).decode((String, String).self) {
                    table[key] = value
                }
                tables[name] = table
            }
            return tables
        }
    }

    public func handle(_ chunk: Chunk, context: FunctionContext) async throws -> [Outcome] {
        let tables: LookupCache.Tables
        do {
            tables = try await cache.current()
        } catch {
            throw FunctionError.retryable("lookup_unavailable", "the lookup tables could not be loaded")
        }
        // A dataset whose chain leaves enrich out passes through unchanged.
        if let datasets {
            let stored: DatasetStore.StoredDataset?
            do {
                stored = try await datasets.spec(chunk.datasetName, atLeast: chunk.dataset?.version)
            } catch {
                throw FunctionError.retryable("dataset_unavailable", "the dataset catalog could not be read")
            }
            if let stored, !stored.spec.chain.contains("enrich") { return chunk.events.map { .forward($0) } }
        }
        let countries = tables["country"] ?? [:], devices = tables["device"] ?? [:]
        return chunk.events.map { event in
            var value = event.value
            let code = value.value(at: Paths.country)?.stringValue?.uppercased()
            value.setValue(code.flatMap { countries[$0] }.map(JSONValue.string) ?? .null, at: Paths.countryName)
            let device = value.value(at: Paths.deviceType)?.stringValue?.lowercased()
            value.setValue(device.flatMap { devices[$0] }.map(JSONValue.string) ?? .null, at: Paths.deviceClass)
            return .forward(Event(value))
        }
    }
}

/// The fields enrich reads and writes, split once.
private enum Paths {
    static let country = JSONPath("context.location.country")
    static let countryName = JSONPath("context.location.country_name")
    static let deviceType = JSONPath("context.device_type")
    static let deviceClass = JSONPath("context.device_class")
}
