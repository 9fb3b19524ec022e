import Hummingbird
import NIOCore
import Sluice
import SluiceHTTP
import SluiceUploads

/// Where an upload's records go: a dataset that exists, or one its first records make.
enum UploadTarget: Sendable {
    case existing(DatasetStore.StoredDataset)
    /// A dataset detected from the upload's first chunk (``DatasetDetector``), with the key and
    /// time fields the caller named.
    case create(name: String, key: [String]?, time: String?)

    var name: String {
        switch self {
        case .existing(let stored): stored.spec.name
        case .create(let name, _, _): name
        }
    }
}

/// The problems of the dataset routes.
enum DatasetRoutes {
    static func problem(_ error: DatasetError) -> Problem {
        var extra: JSONObject = [:]
        if !error.key.isEmpty { extra["key"] = .string(error.key) }
        if let column = error.column { extra["column"] = .string(DatasetSpec.quotedForMessage(column)) }
        let status: HTTPResponse.Status = [.incompatible, .exists, .limitReached].contains(error.code) ? .conflict : .unprocessableContent
        return Problem(status, code: error.code.rawValue, detail: error.description, extra: extra)
    }

    static let notFound = Problem(.notFound, code: "dataset_not_found", detail: "no dataset has this name")
    static let forbidden = Problem(.forbidden, code: "forbidden", detail: "creating or changing a dataset needs the admin role or one of ingest's config.create_datasets")

    /// The most a sample sent to `POST /api/v1/datasets` may hold.
    static let maxSampleBytes = 16 << 20
    /// The most a spec (JSON) may hold: a thousand fields with their settings fit many times.
    static let maxSpecBytes = 256 << 10

    static let specTooLarge = Problem(.contentTooLarge, code: "spec_too_large", detail: "a dataset's spec may hold at most \(maxSpecBytes) bytes",
                                      extra: ["limit": .int(Int64(maxSpecBytes))])
    static let notOwner = Problem(.forbidden, code: "forbidden",
                                  detail: "changing this dataset or its records needs its owner, the admin role or a role its spec names in writers")
}

extension IngestFunction {
    /// Whether `caller` may create and change datasets.
    func mayCreateDatasets(_ caller: Caller?) -> Bool {
        guard let caller else { return false }
        return caller.has("admin") || !caller.roles.isDisjoint(with: createDatasets)
    }

    /// The dataset an upload to `name` goes to: the catalog's, else (when the caller may
    /// create one) one detected from the upload, with `?key=` and `?time=` when given.
    func uploadTarget(_ name: String, create: Bool, query: Parameters) async throws -> UploadTarget {
        let stored: DatasetStore.StoredDataset?
        do {
            stored = try await datasets.spec(name)
        } catch {
            throw Problem(.serviceUnavailable, code: "ingest_unavailable", detail: "the dataset catalog is not available; try again")
        }
        if let stored { return .existing(stored) }
        guard create else { throw DatasetRoutes.notFound }
        if let problem = DatasetSpec.problem(withName: name) {
            throw DatasetRoutes.problem(DatasetError(.badName, key: "name", "the dataset name \(problem)"))
        }
        let key = query.get("key").map { $0.split(separator: ",").map { String($0) } }
        return .create(name: name, key: key, time: query.get("time").map { String($0) })
    }

    /// The CSV columns of `spec`'s uploads: a header naming a field's column goes to its path (a
    /// header naming the path goes there too), then ingest's `config.csv` and the dataset's
    /// `steps.ingest.csv`; the columns of JSON fields hold JSON.
    func csvColumnMapping(for spec: DatasetSpec) throws -> CSVColumnMapping {
        var paths: [String: String] = [:]
        var json: Set<String> = []
        for field in spec.fields {
            if let column = field.column, column != field.path { paths[column] = field.path }
            if [.object, .array, .json].contains(field.type) {
                json.insert(field.path)
                if let column = field.column { json.insert(column) }
            }
        }
        let settings = spec.settings(for: "ingest", base: csvConfig.map { ["csv": $0] } ?? [:])
        return try CSVColumnMapping(config: settings["csv"], file: "datasets/\(spec.name).yaml: steps.ingest", paths: paths, jsonColumns: json)
    }

    // MARK: - Declaring and changing

    /// `POST /api/v1/datasets`: a spec (JSON), or a sample (CSV, NDJSON or a JSON array, with
    /// `?name=`) whose schema is detected; the dataset and its table are created, nothing loaded.
    func createDataset(_ request: Request, caller: Caller?) async throws -> JSONResponse {
        guard mayCreateDatasets(caller) else { throw DatasetRoutes.forbidden }
        let query = request.uri.queryParameters
        let format = UploadFormat.detect(query: query.get("format"), contentType: request.headers[.contentType], filename: nil)
        let body = try await request.body.collect(upTo: DatasetRoutes.maxSampleBytes)
        let spec: DatasetSpec
        do {
            if format == .json, let json = try? JSONParser().parse(Array(buffer: body)), case .object = json {
                guard body.readableBytes <= DatasetRoutes.maxSpecBytes else { throw DatasetRoutes.specTooLarge }
                spec = try DatasetSpec(json: json)
            } else {
                guard let name = query.get("name") else {
                    throw Problem(.badRequest, code: "dataset_name_required", detail: "name the dataset of a sample with ?name=")
                }
                guard let format, format != .text, format != .xml else {
                    throw Problem(.unsupportedMediaType, code: "unsupported_format",
                                  detail: "a spec is application/json; a sample is text/csv, application/x-ndjson or a JSON array")
                }
                if let problem = DatasetSpec.problem(withName: String(name)) {
                    throw DatasetError(.badName, key: "name", "the dataset name \(problem)")
                }
                let records = try Self.sampleRecords(Array(buffer: body), format: format)
                spec = try DatasetDetector.detect(name: String(name), records: records, textCells: format == .csv,
                                                  key: query.get("key").map { $0.split(separator: ",").map { String($0) } },
                                                  time: query.get("time").map { String($0) })
            }
            try router.check(spec)
            let registration = try await datasets.register(spec, origin: format == .json ? "api" : "detected", createOnly: true,
                                                           owner: caller?.ownerKey, maxDatasets: maxDatasets)
            return JSONResponse(status: .created, value: Self.describe(registration.stored, changes: []))
        } catch let error as DatasetError {
            throw DatasetRoutes.problem(error)
        } catch let error as UploadError {
            throw Problem(.badRequest, code: error.code.rawValue, detail: "the sample cannot be parsed: \(error.message)",
                          extra: ["offset": .int(Int64(error.offset))])
        }
    }

    /// `PUT /api/v1/datasets/{name}`: the dataset's new spec; its table is changed as
    /// ``DatasetSpec/changes(from:migration:)`` allows (`?migration=true` declares a migration).
    func updateDataset(_ name: String, _ request: Request, caller: Caller?) async throws -> JSONResponse {
        guard mayCreateDatasets(caller) else { throw DatasetRoutes.forbidden }
        guard let existing = try await datasets.spec(name) else { throw DatasetRoutes.notFound }
        guard existing.mayWrite(caller) else { throw DatasetRoutes.notOwner }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: DatasetRoutes.maxSpecBytes)
        } catch {
            throw DatasetRoutes.specTooLarge
        }
        guard let json = try? JSONParser().parse(Array(buffer: body)) else {
            throw Problem(.badRequest, code: "invalid_json", detail: "the body is not a JSON spec")
        }
        do {
            var spec = try DatasetSpec(json: json, name: name)
            spec.detected = existing.spec.detected && json["detected"]?.boolValue == true
            let migration = request.uri.queryParameters.get("migration") == "true"
            if existing.origin == "file" {
                try Self.checkFileSettingsKept(spec, existing: existing.spec)
            }
            try router.check(spec, fromFile: existing.origin == "file")
            let registration = try await datasets.register(spec, origin: existing.origin, migration: migration)
            return JSONResponse(status: .ok, value: Self.describe(registration.stored, changes: registration.changes))
        } catch let error as DatasetError {
            throw DatasetRoutes.problem(error)
        }
    }

    /// A dataset from a file keeps through the API what decides where its records go and how
    /// they are protected: its chain, table, subject, personal-data fields, `unmasked` and
    /// `writers` change only in its file (`events` among them).
    /// - Throws: `dataset_invalid` naming the key.
    static func checkFileSettingsKept(_ spec: DatasetSpec, existing: DatasetSpec) throws(DatasetError) {
        let kept: [(String, Bool)] = [
            ("chain", spec.chain == existing.chain), ("table", spec.table == existing.table), ("subject", spec.subject == existing.subject),
            ("unmasked", spec.unmasked == existing.unmasked), ("writers", spec.writers == existing.writers),
        ]
        for (key, same) in kept where !same {
            throw DatasetError(.invalid, key: key, "the dataset \(existing.name) is declared in a file: its \(key) changes only there")
        }
        let personal = { (spec: DatasetSpec) in Set(spec.fields.filter(\.pii).map(\.path)) }
        guard personal(spec) == personal(existing) else {
            throw DatasetError(.invalid, key: "fields", "the dataset \(existing.name) is declared in a file: which fields are personal data changes only there")
        }
    }

    static func describe(_ stored: DatasetStore.StoredDataset, changes: [DatasetSpec.TableChange]) -> JSONValue {
        var object: JSONObject = [
            "name": .string(stored.spec.name), "version": .int(Int64(stored.version)), "origin": .string(stored.origin),
            "table": .string(stored.spec.table.description), "spec": stored.spec.json,
            "created_at": .string(stored.createdAt), "updated_at": .string(stored.updatedAt),
        ]
        object["changes"] = .array(changes.map { change in
            switch change {
            case .addColumn(let column): ["add_column": .string(column.name), "type": .string(column.type.rawValue)]
            case .changeType(let column, let from, let to): ["change_type": .string(column), "from": .string(from.rawValue), "to": .string(to.rawValue)]
            case .addIndex(let columns): ["add_index": .array(columns.map(JSONValue.string))]
            }
        })
        return .object(object)
    }

    /// The records of a whole sample.
    static func sampleRecords(_ bytes: [UInt8], format: UploadFormat) throws -> [JSONValue] {
        var records: [UploadRecord] = []
        func run<D: UploadDecoder>(_ decoder: D) throws {
            var decoder = decoder
            var failure: UploadError?
            bytes.withUnsafeBytes { raw in
                do throws(UploadError) {
                    try decoder.feed(raw, into: &records)
                } catch {
                    failure = error
                }
            }
            if let failure { throw failure }
            try decoder.finish(into: &records)
        }
        switch format {
        case .csv:
            var mapping = CSVColumnMapping(paths: [:], jsonColumns: [])
            mapping.headerMasking = { headerMasker.maskKeys($0) }
            try run(ByteOrderMarkSkipping(CSVDecoder(mapping: mapping)))
        case .json: try run(ByteOrderMarkSkipping(JSONArrayDecoder()))
        default: try run(ByteOrderMarkSkipping(NDJSONDecoder()))
        }
        return try records.compactMap { record in
            switch record {
            case .event(let value, _): return value
            case .row(let row, let shape, _): return try RowShape(json: shape).event(try JSONParser().parse(row))
            case .malformed: return nil
            }
        }
    }
}
