/// How a function that runs outside the `sluice` binary is reached: a process Sluice starts and
/// supervises (`command`), or an address the operator runs beside it (`url`, a sidecar). See
/// docs/function-protocol.md.
///
/// ```yaml
/// runtime:
///   command: [python3, handler.py]   # started in the function's folder, with PORT set
///   build: [sh, build.sh]            # run first, in the folder, by sluice dev and sluice invoke
///   port: 9101                       # the port it listens on (default: a free one, passed as PORT)
///   protocol: http                   # Sluice's function protocol; or lambda: the AWS Lambda Runtime API
///   timeout: 10s                     # the longest one chunk may take (at most visibility_timeout)
///   ready_timeout: 30s               # the longest a start may take until it answers
///   memory: 256Mi                    # its address-space limit (RLIMIT_AS), when set
///   image: registry/score:1.0        # its image as a sidecar (sluice render)
/// ```
public struct FunctionRuntime: Sendable, Equatable {
    /// The way chunks reach the process.
    public enum WireProtocol: String, Sendable, CaseIterable {
        /// Sluice POSTs each chunk to the process (docs/function-protocol.md).
        case http
        /// Sluice serves the AWS Lambda Runtime API to the process (`AWS_LAMBDA_RUNTIME_API`),
        /// which polls it for chunks: a handler written for Lambda runs unmodified.
        case lambda
    }

    /// The program and its arguments, started in the function's folder; nil: `url` is called.
    public var command: [String]?
    /// The address of a process the operator runs (`http://127.0.0.1:9101`); nil: `command`.
    public var url: String?
    /// The program that builds `command` (a compiled language), run in the function's folder
    /// before the process starts and after each change under `sluice dev` (and by `sluice
    /// invoke`); `sluice serve` runs `command` as it is, built into the image.
    public var build: [String]?
    /// The port the started process listens on; nil: a free port, chosen at each start.
    public var port: Int?
    public var wireProtocol: WireProtocol = .http
    /// The longest one chunk may take before it is cut and retried.
    public var timeout: Duration = .seconds(10)
    /// The longest a start may take until the process answers.
    public var readyTimeout: Duration = .seconds(30)
    /// The address-space limit of the started process, in bytes.
    public var memoryBytes: Int?
    /// The container image of the process when deployed beside Sluice (`sluice render`); nil:
    /// `sluice-function-NAME:latest`.
    public var image: String?
    /// The function's folder (where `command` starts).
    public var directory: String

    public init(command: [String]? = nil, url: String? = nil, port: Int? = nil, wireProtocol: WireProtocol = .http,
                timeout: Duration = .seconds(10), readyTimeout: Duration = .seconds(30), memoryBytes: Int? = nil, directory: String = ".") {
        self.command = command
        self.url = url
        self.port = port
        self.wireProtocol = wireProtocol
        self.timeout = timeout
        self.readyTimeout = readyTimeout
        self.memoryBytes = memoryBytes
        self.directory = directory
    }

    /// The handler name of every function that declares a runtime.
    public static let handler = "process"

    /// Bytes in a Kubernetes memory quantity (`256Mi`, `1G`, `512000`); nil when it is not one.
    public static func bytes(_ quantity: String) -> Int? {
        let units: [(String, Int)] = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000)]
        for (suffix, factor) in units where quantity.hasSuffix(suffix) {
            guard let value = Int(quantity.dropLast(suffix.count)), value > 0 else { return nil }
            return value.multipliedReportingOverflow(by: factor).overflow ? nil : value * factor
        }
        guard let value = Int(quantity), value > 0 else { return nil }
        return value
    }
}
