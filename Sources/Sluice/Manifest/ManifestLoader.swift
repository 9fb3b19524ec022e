import Foundation
import Yams

/// Reads and checks function manifests.
///
/// Unknown keys, missing fields, wrong types and bad durations are errors that name the file,
/// the key and its line, so that a typo never silently falls back to a default.
public struct ManifestLoader: Sendable {
    /// The folder holding one sub-folder per function.
    public var functionsDirectory: String

    /// Creates a loader for `functionsDirectory` (`./functions` by default).
    public init(functionsDirectory: String = "./functions") {
        self.functionsDirectory = functionsDirectory
    }

    /// The names of the folders under the functions directory that hold a `function.yaml`, sorted.
    public func functionNames() throws -> [String] {
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: functionsDirectory) else {
            throw ManifestError(.unreadable, file: functionsDirectory, key: "",
                                message: "cannot read the functions directory")
        }
        return entries.filter { fm.fileExists(atPath: "\(functionsDirectory)/\($0)/function.yaml") }.sorted()
    }

    /// Loads the manifest of function `name`.
    /// - Throws: ``ManifestError``.
    public func load(_ name: String) throws -> Manifest {
        let file = "\(functionsDirectory)/\(name)/function.yaml"
        guard FileManager.default.fileExists(atPath: file) else {
            throw ManifestError(.unknownFunction, file: file, key: "",
                                message: "no function named '\(name)' (no such file)")
        }
        guard let data = FileManager.default.contents(atPath: file),
              let text = String(data: data, encoding: .utf8)
        else {
            throw ManifestError(.unreadable, file: file, key: "", message: "cannot read the file as UTF-8")
        }
        return try Self.parse(text, name: name, file: file)
    }

    /// Loads every manifest in the functions directory.
    public func loadAll() throws -> [Manifest] {
        try functionNames().map(load)
    }

    /// Parses manifest text for function `name`; `file` is used in error messages.
    public static func parse(_ text: String, name: String, file: String) throws -> Manifest {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ManifestError(.syntax, file: file, key: "", message: "not valid YAML (\(Self.describe(error)))")
        }
        guard let root, let top = root.mapping else {
            throw ManifestError(.syntax, file: file, key: "", message: "the manifest must be a mapping of keys")
        }
        var reader = Reader(file: file)
        let fields = try reader.fields(of: top, at: "", allowed: [
            "name", "handler", "description", "triggers", "outputs", "middleware", "batch", "linger",
            "concurrency", "visibility_timeout", "retry", "environment", "config", "counts_as", "deploy", "expose",
            "max_chunk_bytes", "fan_out", "dead_letters", "runtime",
        ])
        var manifest = Manifest(name: name, handler: "", file: file)
        if let node = fields["name"] {
            let declared = try reader.string(node, at: "name")
            guard declared == name else {
                throw reader.error(.badValue, "name", node, "is '\(declared)' but the folder is '\(name)'")
            }
        }
        if let node = fields["runtime"] {
            let directory = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
            manifest.runtime = try reader.runtime(node, directory: directory)
            // A function in a process of its own has the one handler that calls it.
            if let handler = fields["handler"], try reader.string(handler, at: "handler") != FunctionRuntime.handler {
                throw reader.error(.badValue, "handler", handler, "must be '\(FunctionRuntime.handler)' (or left out) for a function with a runtime")
            }
            manifest.handler = FunctionRuntime.handler
        } else {
            guard let handler = fields["handler"] else {
                throw ManifestError(.missingField, file: file, key: "handler", message: "is required")
            }
            manifest.handler = try reader.string(handler, at: "handler")
            guard manifest.handler != FunctionRuntime.handler else {
                throw reader.error(.missingField, "runtime", handler, "is required for handler '\(FunctionRuntime.handler)' (how the process starts or where it listens)")
            }
        }
        if let node = fields["description"] { manifest.description = try reader.string(node, at: "description") }
        guard let triggers = fields["triggers"] else {
            throw ManifestError(.missingField, file: file, key: "triggers", message: "is required")
        }
        manifest.triggers = try reader.triggers(triggers)
        if let node = fields["outputs"] { manifest.outputs = try reader.strings(node, at: "outputs") }
        if let node = fields["middleware"] { manifest.middleware = try reader.strings(node, at: "middleware") }
        if let node = fields["batch"] { manifest.batch = try reader.positiveInt(node, at: "batch") }
        if let node = fields["linger"] { manifest.linger = try reader.duration(node, at: "linger") }
        if let node = fields["concurrency"] { manifest.concurrency = try reader.positiveInt(node, at: "concurrency") }
        if let node = fields["visibility_timeout"] {
            manifest.visibilityTimeout = try reader.duration(node, at: "visibility_timeout")
            guard manifest.visibilityTimeout >= .milliseconds(100) else {
                throw reader.error(.badValue, "visibility_timeout", node, "must be at least 100ms")
            }
        }
        if let node = fields["retry"] { manifest.retry = try reader.retry(node) }
        if let node = fields["max_chunk_bytes"] {
            manifest.maxChunkBytes = try reader.positiveInt(node, at: "max_chunk_bytes")
            guard manifest.maxChunkBytes >= 1024 else { throw reader.error(.badValue, "max_chunk_bytes", node, "must be at least 1024") }
        }
        if let node = fields["fan_out"] {
            guard let mapping = node.mapping else { throw reader.error(.badValue, "fan_out", node, "must be a mapping {per_event, per_chunk}") }
            let limits = try reader.fields(of: mapping, at: "fan_out", allowed: ["per_event", "per_chunk"])
            if let n = limits["per_event"] { manifest.maxFanOutPerEvent = try reader.positiveInt(n, at: "fan_out.per_event") }
            if let n = limits["per_chunk"] { manifest.maxFanOutPerChunk = try reader.positiveInt(n, at: "fan_out.per_chunk") }
        }
        if let node = fields["dead_letters"] { manifest.deadLetters = try reader.deadLetters(node) }
        if let node = fields["environment"] { manifest.environment = try reader.environment(node) }
        if let node = fields["config"] { manifest.config = try reader.json(node, at: "config") }
        if let node = fields["counts_as"] {
            let value = try reader.string(node, at: "counts_as")
            guard Manifest.terminalCounters.contains(value) else {
                throw reader.error(.badValue, "counts_as", node, "must be one of \(Manifest.terminalCounters.sorted().joined(separator: ", "))")
            }
            manifest.countsAs = value
        }
        if let node = fields["expose"] {
            for value in try reader.strings(node, at: "expose") {
                guard let exposure = Manifest.Exposure(rawValue: value) else {
                    throw reader.error(.badValue, "expose", node, "'\(value)' is not a way in (allowed: \(Manifest.Exposure.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                manifest.expose.insert(exposure)
            }
            if manifest.expose.contains(.step), manifest.inputStream == nil || manifest.servesHTTP {
                throw reader.error(.badValue, "expose", node, "step: only a function that takes a stream (and serves no route) can be a dataset's step")
            }
            if manifest.expose.contains(.async) {
                guard manifest.inputStream != nil || !manifest.servesHTTP else {
                    throw reader.error(.badValue, "expose", node, "async: only event functions can be called asynchronously")
                }
                guard manifest.middleware.contains("pii-mask") else {
                    throw reader.error(.badValue, "expose", node, "async: a call stores the events it is given, so the function must declare pii-mask")
                }
            }
        }
        if let runtime = manifest.runtime {
            guard manifest.inputStream != nil, !manifest.servesHTTP else {
                throw ManifestError(.badValue, file: file, key: "triggers", message: "a function with a runtime takes chunks from a stream: declare one stream trigger and no http trigger")
            }
            guard runtime.timeout <= manifest.visibilityTimeout else {
                throw ManifestError(.badValue, file: file, key: "runtime.timeout",
                                    message: "must not be longer than visibility_timeout (a chunk held longer would be reclaimed while it runs)")
            }
        }
        if let node = fields["deploy"] { manifest.deploy = try reader.deploy(node, streamTriggered: manifest.inputStream != nil) }
        for output in manifest.outputs where !Self.isValidStreamName(output) {
            throw ManifestError(.badValue, file: file, key: "outputs", message: "'\(output)' is not a valid stream name (use letters, digits, '-', '_', '.')")
        }
        return manifest
    }

    /// Reads YAML text as JSON (plain scalars typed as YAML 1.2 core does; aliases refused).
    /// - Throws: ``ManifestError`` naming `file`.
    public static func json(yaml text: String, file: String) throws -> JSONValue {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ManifestError(.syntax, file: file, key: "", message: "not valid YAML (\(Self.describe(error)))")
        }
        guard let root else { return .null }
        return try Reader(file: file).json(root, at: "")
    }

    static func isValidStreamName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 100 && name.unicodeScalars.allSatisfy {
            ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "-_.".unicodeScalars.contains($0)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let yaml = error as? YamlError {
            switch yaml {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
                return "\(context?.text ?? "") \(problem) at line \(mark.line)".trimmingWhitespace()
            default: return "syntax error"
            }
        }
        return "syntax error"
    }
}

/// Walks a YAML node tree, turning every surprise into a ``ManifestError``.
private struct Reader {
    let file: String

    func error(_ code: ManifestError.Code, _ key: String, _ node: Node?, _ message: String) -> ManifestError {
        let line = node?.mark.map { " (line \($0.line))" } ?? ""
        return ManifestError(code, file: file, key: key, message: message + line)
    }

    func join(_ prefix: String, _ key: String) -> String { prefix.isEmpty ? key : "\(prefix).\(key)" }

    mutating func fields(of mapping: Node.Mapping, at path: String, allowed: Set<String>) throws -> [String: Node] {
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.string else {
                throw error(.badValue, path, keyNode, "keys must be strings")
            }
            guard allowed.contains(key) else {
                throw error(.unknownKey, join(path, key), keyNode,
                            "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard result[key] == nil else {
                throw error(.badValue, join(path, key), keyNode, "appears twice")
            }
            result[key] = value
        }
        return result
    }

    func string(_ node: Node, at key: String) throws -> String {
        guard let scalar = node.scalar else { throw error(.badValue, key, node, "must be a string") }
        return scalar.string
    }

    func strings(_ node: Node, at key: String) throws -> [String] {
        guard let sequence = node.sequence else { throw error(.badValue, key, node, "must be a list") }
        return try sequence.enumerated().map { try string($0.element, at: "\(key)[\($0.offset)]") }
    }

    func positiveInt(_ node: Node, at key: String) throws -> Int {
        guard node.scalar != nil, let value = node.int else {
            throw error(.badValue, key, node, "must be a whole number")
        }
        guard value >= 1 else { throw error(.badValue, key, node, "must be at least 1") }
        return value
    }

    func duration(_ node: Node, at key: String) throws -> Duration {
        guard let text = node.scalar?.string, let value = DurationParser.parse(text) else {
            throw error(.badDuration, key, node, "is not a duration (write e.g. 250ms, 5s, 2m, 1h, 7d)")
        }
        return value
    }

    mutating func triggers(_ node: Node) throws -> [Manifest.Trigger] {
        guard let sequence = node.sequence, !sequence.isEmpty else {
            throw error(.badValue, "triggers", node, "must be a non-empty list")
        }
        var result: [Manifest.Trigger] = []
        for (index, item) in sequence.enumerated() {
            let path = "triggers[\(index)]"
            guard let mapping = item.mapping else {
                throw error(.badValue, path, item, "must be `stream: NAME` or `http: {}`")
            }
            let fields = try self.fields(of: mapping, at: path, allowed: ["stream", "http"])
            if let stream = fields["stream"] {
                let name = try string(stream, at: "\(path).stream")
                guard ManifestLoader.isValidStreamName(name) else {
                    throw error(.badValue, "\(path).stream", stream, "'\(name)' is not a valid stream name")
                }
                result.append(.stream(name))
            }
            if let http = fields["http"] {
                if let map = http.mapping {
                    _ = try self.fields(of: map, at: "\(path).http", allowed: [])
                } else if http.null == nil {
                    throw error(.badValue, "\(path).http", http, "must be {}")
                }
                result.append(.http)
            }
            if fields.isEmpty { throw error(.badValue, path, item, "must be `stream: NAME` or `http: {}`") }
        }
        return result
    }

    mutating func retry(_ node: Node) throws -> RetryPolicy {
        guard let mapping = node.mapping else { throw error(.badValue, "retry", node, "must be a mapping") }
        let fields = try self.fields(of: mapping, at: "retry",
                                     allowed: ["max_attempts", "initial_backoff", "max_backoff", "jitter"])
        var policy = RetryPolicy()
        if let n = fields["max_attempts"] { policy.maxAttempts = try positiveInt(n, at: "retry.max_attempts") }
        if let n = fields["initial_backoff"] { policy.initialBackoff = try duration(n, at: "retry.initial_backoff") }
        if let n = fields["max_backoff"] { policy.maxBackoff = try duration(n, at: "retry.max_backoff") }
        if let n = fields["jitter"] {
            guard n.scalar != nil, let value = n.float, (0...1).contains(value) else {
                throw error(.badValue, "retry.jitter", n, "must be a number from 0 to 1")
            }
            policy.jitter = value
        }
        guard policy.maxBackoff >= policy.initialBackoff else {
            throw error(.badValue, "retry.max_backoff", fields["max_backoff"] ?? node,
                        "must not be shorter than retry.initial_backoff")
        }
        return policy
    }

    mutating func deadLetters(_ node: Node) throws -> DeadLetterPolicy {
        guard let mapping = node.mapping else { throw error(.badValue, "dead_letters", node, "must be a mapping") }
        let fields = try self.fields(of: mapping, at: "dead_letters", allowed: ["max_age", "max_length"])
        var policy = DeadLetterPolicy()
        if let n = fields["max_age"] {
            policy.maxAge = try duration(n, at: "dead_letters.max_age")
            guard policy.maxAge >= .seconds(1) else { throw error(.badValue, "dead_letters.max_age", n, "must be at least 1s") }
        }
        if let n = fields["max_length"] { policy.maxLength = try positiveInt(n, at: "dead_letters.max_length") }
        return policy
    }

    mutating func deploy(_ node: Node, streamTriggered: Bool) throws -> DeploySettings {
        guard let mapping = node.mapping else { throw error(.badValue, "deploy", node, "must be a mapping") }
        let fields = try self.fields(of: mapping, at: "deploy", allowed: ["replicas", "lag_count", "cpu_utilization", "resources"])
        var settings = DeploySettings()
        if let replicas = fields["replicas"] {
            guard let map = replicas.mapping else { throw error(.badValue, "deploy.replicas", replicas, "must be {min: N, max: N}") }
            let bounds = try self.fields(of: map, at: "deploy.replicas", allowed: ["min", "max"])
            if let n = bounds["min"] {
                guard n.scalar != nil, let value = n.int, value >= 0 else { throw error(.badValue, "deploy.replicas.min", n, "must be a whole number, 0 or more") }
                // Only KEDA scales from zero, on stream lag: an HTTP function needs a replica to answer.
                guard value >= 1 || streamTriggered else { throw error(.badValue, "deploy.replicas.min", n, "must be at least 1 for a function without a stream trigger") }
                settings.minReplicas = value
            }
            if let n = bounds["max"] { settings.maxReplicas = try positiveInt(n, at: "deploy.replicas.max") }
            guard settings.maxReplicas >= settings.minReplicas else {
                throw error(.badValue, "deploy.replicas.max", bounds["max"] ?? replicas, "must not be less than deploy.replicas.min")
            }
        }
        if let n = fields["lag_count"] { settings.lagCount = try positiveInt(n, at: "deploy.lag_count") }
        if let n = fields["cpu_utilization"] {
            let value = try positiveInt(n, at: "deploy.cpu_utilization")
            guard value <= 100 else { throw error(.badValue, "deploy.cpu_utilization", n, "must be a percentage from 1 to 100") }
            settings.cpuUtilization = value
        }
        if let resources = fields["resources"] {
            guard let map = resources.mapping else { throw error(.badValue, "deploy.resources", resources, "must be {requests: {...}, limits: {...}}") }
            let kinds = try self.fields(of: map, at: "deploy.resources", allowed: ["requests", "limits"])
            if let n = kinds["requests"] { settings.requests = try self.resources(n, at: "deploy.resources.requests", default: settings.requests) }
            if let n = kinds["limits"] { settings.limits = try self.resources(n, at: "deploy.resources.limits", default: settings.limits) }
        }
        return settings
    }

    mutating func resources(_ node: Node, at path: String, default fallback: DeploySettings.ComputeResources) throws -> DeploySettings.ComputeResources {
        guard let map = node.mapping else { throw error(.badValue, path, node, "must be {cpu: ..., memory: ...}") }
        let fields = try self.fields(of: map, at: path, allowed: ["cpu", "memory"])
        var result = fallback
        for (key, value) in fields {
            let text = try string(value, at: "\(path).\(key)")
            guard DeploySettings.isQuantity(text) else {
                throw error(.badValue, "\(path).\(key)", value, "'\(text)' is not a Kubernetes quantity (write e.g. 250m, 1, 512Mi)")
            }
            if key == "cpu" { result.cpu = text } else { result.memory = text }
        }
        return result
    }

    mutating func runtime(_ node: Node, directory: String) throws -> FunctionRuntime {
        guard let mapping = node.mapping else { throw error(.badValue, "runtime", node, "must be a mapping: {command: [...]} or {url: ...}") }
        let fields = try self.fields(of: mapping, at: "runtime",
                                     allowed: ["command", "build", "url", "port", "protocol", "timeout", "ready_timeout", "memory", "image"])
        var runtime = FunctionRuntime(directory: directory)
        if let n = fields["command"] {
            let command = try strings(n, at: "runtime.command")
            guard let program = command.first, !program.isEmpty else { throw error(.badValue, "runtime.command", n, "must name a program") }
            runtime.command = command
        }
        if let n = fields["url"] {
            let url = try string(n, at: "runtime.url")
            guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > 8, !url.contains(" ") else {
                throw error(.badValue, "runtime.url", n, "must be an http:// or https:// address")
            }
            runtime.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        }
        guard (runtime.command == nil) != (runtime.url == nil) else {
            throw error(.badValue, "runtime", node, "declare exactly one of command (Sluice starts the process) or url (the operator runs it)")
        }
        if let n = fields["build"] {
            let build = try strings(n, at: "runtime.build")
            guard let program = build.first, !program.isEmpty, runtime.command != nil else {
                throw error(.badValue, "runtime.build", n, runtime.command == nil ? "applies to a command only" : "must name a program")
            }
            runtime.build = build
        }
        if let n = fields["port"] {
            let port = try positiveInt(n, at: "runtime.port")
            guard port <= 65535, runtime.command != nil else {
                throw error(.badValue, "runtime.port", n, runtime.command == nil ? "applies to a command only (the url names its port)" : "must be at most 65535")
            }
            runtime.port = port
        }
        if let n = fields["protocol"] {
            let text = try string(n, at: "runtime.protocol")
            guard let value = FunctionRuntime.WireProtocol(rawValue: text) else {
                throw error(.badValue, "runtime.protocol", n, "must be one of \(FunctionRuntime.WireProtocol.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            runtime.wireProtocol = value
            guard value != .lambda || runtime.command != nil else {
                throw error(.badValue, "runtime.protocol", n, "lambda applies to a command only (Sluice serves the Runtime API to the process it starts)")
            }
            guard value != .lambda || runtime.port == nil else {
                throw error(.badValue, "runtime.port", n, "does not apply to lambda (the process polls Sluice's Runtime API)")
            }
        }
        if let n = fields["timeout"] {
            runtime.timeout = try duration(n, at: "runtime.timeout")
            guard runtime.timeout >= .milliseconds(10) else { throw error(.badValue, "runtime.timeout", n, "must be at least 10ms") }
        }
        if let n = fields["ready_timeout"] {
            runtime.readyTimeout = try duration(n, at: "runtime.ready_timeout")
            guard runtime.readyTimeout >= .milliseconds(100) else { throw error(.badValue, "runtime.ready_timeout", n, "must be at least 100ms") }
        }
        if let n = fields["memory"] {
            let text = try string(n, at: "runtime.memory")
            guard let bytes = FunctionRuntime.bytes(text), bytes >= 16 << 20, runtime.command != nil else {
                throw error(.badValue, "runtime.memory", n, runtime.command == nil
                            ? "applies to a command only" : "'\(text)' is not a memory size of at least 16Mi (write e.g. 256Mi, 1Gi)")
            }
            runtime.memoryBytes = bytes
        }
        if let n = fields["image"] {
            let image = try string(n, at: "runtime.image")
            guard !image.isEmpty, image.utf8.count <= 255, !image.contains(where: { $0.isWhitespace }), runtime.command != nil else {
                throw error(.badValue, "runtime.image", n, runtime.command == nil ? "applies to a command only" : "must be an image reference without spaces")
            }
            runtime.image = image
        }
        return runtime
    }

    func environment(_ node: Node) throws -> [String: String] {
        guard let mapping = node.mapping else { throw error(.badValue, "environment", node, "must be a mapping") }
        var result: [String: String] = [:]
        for (key, value) in mapping {
            guard let name = key.string else { throw error(.badValue, "environment", key, "keys must be strings") }
            guard let scalar = value.scalar else {
                throw error(.badValue, "environment.\(name)", value, "must be a string, number or boolean")
            }
            result[name] = scalar.string
        }
        return result
    }

    func json(_ node: Node, at key: String) throws -> JSONValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain || scalar.style == .any {
                if node.null != nil { return .null }
                if let b = node.bool { return .bool(b) }
                if let i = node.int { return .int(Int64(i)) }
                if let d = node.float { return .double(d) }
            }
            return .string(scalar.string)
        case .sequence(let sequence):
            return .array(try sequence.enumerated().map { try json($0.element, at: "\(key)[\($0.offset)]") })
        case .mapping(let mapping):
            var object = JSONObject()
            for (k, v) in mapping {
                guard let name = k.string else { throw error(.badValue, key, k, "keys must be strings") }
                object[name] = try json(v, at: "\(key).\(name)")
            }
            return .object(object)
        case .alias:
            throw error(.badValue, key, node, "YAML aliases are not supported")
        }
    }
}
