// The files `sluice new NAME --lang swift` writes: a function in one folder, like the Python and
// Node ones, that Sluice builds (build.sh, swiftc), starts and calls over its function protocol.
extension FunctionTemplates {
    static let swiftProcess: [String: String] = [
        "function.yaml": ##"""
            # __NAME__: a Sluice function in Swift (Foundation only), a process Sluice builds, starts and calls
            # over its function protocol (docs/function-protocol.md in Sluice's source).
            description: Forwards each event, drops those of the event types in config.drop_types.
            runtime:
              # Run by sluice dev and sluice invoke before the process starts and after each change here.
              build: [sh, build.sh]
              command: [.build/__NAME__]
              timeout: 10s

            """## + manifestCommon,
        "handler.swift": ##"""
            // __NAME__: a Sluice function in Swift (Foundation only). Sluice POSTs one chunk at a time to this
            // process; each event is decoded as `Input` and `handle` decides what becomes of it. `sluice dev`
            // builds it (build.sh) and restarts it within a second when a file here changes.
            import Foundation
            import SluiceProtocol

            /// The fields of an event this function reads; the others pass on untouched. An event that does
            /// not fit (not an object, a field of another type, a non-optional one missing) is quarantined as
            /// wrong_type or missing_field, with the field's path.
            struct Input: Decodable {
                var event_type: String?
            }

            /// The fields `.forward(Output(...))` sets on an event (added, or replacing the event's own).
            struct Output: Encodable {
                var checked: Bool
            }

            /// The manifest's `config` (optional fields: a missing key is nil).
            struct Config: Decodable {
                var drop_types: [String]?
            }

            /// Decides one event: `.keep` (it goes on as it came), `.forward(Output(...))`,
            /// `.drop(reason:)` or `.quarantine(reason:field:)`. Change this: it is your function.
            func handle(_ event: Input, config: Config) throws -> Outcome<Output> {
                if let type = event.event_type, config.drop_types?.contains(type) == true {
                    return .drop(reason: "unwanted_type")
                }
                return .keep
            }

            """##,
        "SluiceProtocol.swift": ##"""
            // The plumbing between handler.swift and Sluice, as its own module (build.sh builds it once):
            // Sluice's function protocol (docs/function-protocol.md in Sluice's source) over HTTP/1.1 on
            // 127.0.0.1:$PORT, each event decoded as your `Input`, each outcome encoded. Foundation only.
            // You need not change this file.
            import Foundation
            #if canImport(Glibc)
            import Glibc
            #endif

            /// What becomes of one event.
            public enum Outcome<Output: Encodable> {
                /// It goes on with `Output`'s fields set over it (the others as they came).
                case forward(Output)
                /// It goes on as it came.
                case keep
                /// It goes no further, counted in the job under `drops.REASON` (1–64 of a-z 0-9 _ - .).
                case drop(reason: String)
                /// It is kept in the quarantine with the reason, and the field at fault if you name it.
                case quarantine(reason: String, field: String? = nil)
            }

            /// A chunk cannot be taken at all: it is dead-lettered, or retried (`retry: true`).
            public struct ChunkError: Error {
                public var code: String
                public var message: String
                public var retry: Bool

                public init(code: String, message: String, retry: Bool = false) {
                    self.code = code
                    self.message = message
                    self.retry = retry
                }
            }

            /// Sluice's request: the events (each decoded on its own) and the manifest's `config`.
            struct ChunkRequest<Input: Decodable, Config: Decodable>: Decodable {
                var events: [Decoded<Input>]
                var config: Config

                enum CodingKeys: String, CodingKey { case events, config }

                init(from decoder: any Decoder) throws {
                    let container = try decoder.container(keyedBy: CodingKeys.self)
                    events = try container.decode([Decoded<Input>].self, forKey: .events)
                    do {
                        // A manifest without config (or with config: null) sends none: Config from {}.
                        if try !container.contains(.config) || container.decodeNil(forKey: .config) {
                            config = try JSONDecoder().decode(Config.self, from: Data("{}".utf8))
                        } else {
                            config = try container.decode(Config.self, forKey: .config)
                        }
                    } catch let error as DecodingError {
                        throw ChunkError(code: "bad_config", message: "the manifest's config does not fit Config: \(describe(error))")
                    }
                }
            }

            /// One event, or why it does not fit `Input`.
            struct Decoded<Input: Decodable>: Decodable {
                var value: Result<Input, DecodingError>

                init(from decoder: any Decoder) throws {
                    do {
                        value = .success(try Input(from: decoder))
                    } catch let error as DecodingError {
                        value = .failure(error)
                    }
                }
            }

            /// One outcome as the protocol spells it.
            struct Answer<Output: Encodable>: Encodable {
                var outcome: Outcome<Output>

                enum CodingKeys: String, CodingKey { case outcome, set, reason, field }

                func encode(to encoder: any Encoder) throws {
                    var container = encoder.container(keyedBy: CodingKeys.self)
                    switch outcome {
                    case .forward(let output):
                        try container.encode("forward", forKey: .outcome)
                        try container.encode(output, forKey: .set)
                    case .keep:
                        try container.encode("forward", forKey: .outcome)
                    case .drop(let reason):
                        try container.encode("drop", forKey: .outcome)
                        try container.encode(reason, forKey: .reason)
                    case .quarantine(let reason, let field):
                        try container.encode("quarantine", forKey: .outcome)
                        try container.encode(reason, forKey: .reason)
                        try container.encodeIfPresent(field, forKey: .field)
                    }
                }
            }

            /// The answer to one request body: `(status, body)`. A `ChunkError` thrown by `handle`
            /// dead-letters (or retries) the chunk; any other error fails it (500: retried with backoff).
            public func respond<Input: Decodable, Output: Encodable, Config: Decodable>(
                to body: Data, with handle: (Input, Config) throws -> Outcome<Output>
            ) -> (Int, Data) {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.withoutEscapingSlashes]
                encoder.dateEncodingStrategy = .iso8601
                let decoder = JSONDecoder()
                decoder.dateDecodingStrategy = .custom { decoder in
                    // ISO 8601, with or without fractions of a second (Sluice's timestamps have them).
                    let container = try decoder.singleValueContainer()
                    let text = try container.decode(String.self)
                    let formatter = ISO8601DateFormatter()
                    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                    if let date = formatter.date(from: text) { return date }
                    formatter.formatOptions = [.withInternetDateTime]
                    if let date = formatter.date(from: text) { return date }
                    throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 timestamp")
                }
                do {
                    let chunk = try decoder.decode(ChunkRequest<Input, Config>.self, from: body)
                    var outcomes: [Answer<Output>] = []
                    outcomes.reserveCapacity(chunk.events.count)
                    for event in chunk.events {
                        switch event.value {
                        case .success(let input): outcomes.append(Answer(outcome: try handle(input, chunk.config)))
                        case .failure(let error):
                            let (reason, field) = reason(for: error)
                            outcomes.append(Answer(outcome: .quarantine(reason: reason, field: field)))
                        }
                    }
                    return (200, try encoder.encode(["outcomes": outcomes]))
                } catch let error as ChunkError {
                    let key = error.retry ? "retry" : "dead_letter"
                    return (200, (try? encoder.encode([key: ["code": error.code, "message": error.message]])) ?? Data())
                } catch let error as DecodingError {
                    return (400, (try? encoder.encode(["title": "the body is not a chunk: \(describe(error))"])) ?? Data())
                } catch {
                    // Retried with backoff, then dead-lettered; the error's type only (its text may hold data).
                    return (500, (try? encoder.encode(["title": "the handler failed", "type": "\(type(of: error))"])) ?? Data())
                }
            }

            /// `missing_field` or `wrong_type`, and the field's path (`properties.value`, `items[2]`).
            func reason(for error: DecodingError) -> (String, String?) {
                func path(_ keys: [any CodingKey]) -> String? {
                    let text = keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                        .reduce(into: "") { $0 += $1.hasPrefix("[") || $0.isEmpty ? $1 : ".\($1)" }
                    return text.isEmpty ? nil : text
                }
                // The path inside one event: the first two keys are `events` and its index.
                func inEvent(_ keys: [any CodingKey]) -> [any CodingKey] { Array(keys.dropFirst(2)) }
                switch error {
                case .keyNotFound(let key, let context): return ("missing_field", path(inEvent(context.codingPath + [key])))
                case .valueNotFound(_, let context): return ("missing_field", path(inEvent(context.codingPath)))
                case .typeMismatch(_, let context), .dataCorrupted(let context): return ("wrong_type", path(inEvent(context.codingPath)))
                @unknown default: return ("wrong_type", nil)
                }
            }

            func describe(_ error: DecodingError) -> String {
                switch error {
                case .keyNotFound(let key, _): "'\(key.stringValue)' is missing"
                case .valueNotFound(_, let context), .typeMismatch(_, let context), .dataCorrupted(let context):
                    "\(context.debugDescription) (at '\(context.codingPath.map(\.stringValue).joined(separator: "."))')"
                @unknown default: "\(error)"
                }
            }

            /// Serves `handle` on the socket Sluice passed (or 127.0.0.1:$PORT) until SIGTERM: each connection on a thread of its own,
            /// HTTP/1.1 with keep-alive, only requests with Sluice's bearer token answered.
            public func serve<Input: Decodable, Output: Encodable, Config: Decodable>(
                _ handle: @escaping (Input, Config) throws -> Outcome<Output>
            ) -> Never {
                // Sluice sends SIGTERM once the chunks in flight are answered (or to reload): stop at once.
                signal(SIGTERM) { _ in _exit(0) }
                signal(SIGPIPE, SIG_IGN)
                let environment = ProcessInfo.processInfo.environment
                guard let port = environment["PORT"].flatMap(UInt16.init) else { fatalError("PORT is not set") }
                let token = Array(("Bearer " + (environment["SLUICE_FUNCTION_TOKEN"] ?? "")).utf8)
                // The socket Sluice bound for this process (descriptor 3, LISTEN_FDS=1: no other local
                // user can take its port first); 127.0.0.1:$PORT when run by hand.
                var listener: Int32 = 3
                if environment["LISTEN_FDS"] != "1" || environment["LISTEN_PID"] != String(getpid()) {
                    listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                    var one: Int32 = 1
                    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
                    var address = sockaddr_in()
                    address.sin_family = sa_family_t(AF_INET)
                    address.sin_port = port.bigEndian
                    address.sin_addr.s_addr = inet_addr("127.0.0.1")
                    let bound = withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                    guard bound == 0, listen(listener, 128) == 0 else { fatalError("cannot listen on 127.0.0.1:\(port): errno \(errno)") }
                }
                while true {
                    let connection = accept(listener, nil, nil)
                    guard connection >= 0 else { continue }
                    Thread.detachNewThread {
                        HTTPConnection(fd: connection, token: token).run { respond(to: $0, with: handle) }
                    }
                }
            }

            /// One connection's requests, one after another.
            struct HTTPConnection {
                let fd: Int32
                let token: [UInt8]
                static let maxHeaderBytes = 64 << 10
                static let maxBodyBytes = 256 << 20

                func run(_ answer: (Data) -> (Int, Data)) {
                    defer { close(fd) }
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    var buffer: [UInt8] = []
                    while true {
                        // The head: up to the blank line.
                        var headEnd: Int?
                        while headEnd == nil {
                            headEnd = buffer.firstRange(of: [13, 10, 13, 10])?.upperBound
                            if headEnd != nil { break }
                            if buffer.count > Self.maxHeaderBytes { return write(431, #"{"title":"the head is too large"}"#) }
                            guard read(into: &buffer) else { return }
                        }
                        let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
                        buffer.removeFirst(headEnd!)
                        var length: Int?, authorized = false, keepAlive = true
                        for line in head.split(separator: "\r\n").dropFirst() {
                            guard let colon = line.firstIndex(of: ":") else { continue }
                            let name = line[..<colon].lowercased(), value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                            switch name {
                            case "content-length": length = Int(value)
                            case "authorization": authorized = constantTimeEqual(Array(value.utf8), token)
                            case "connection": keepAlive = value.lowercased() != "close"
                            case "transfer-encoding": return write(411, #"{"title":"send Content-Length"}"#)
                            default: break
                            }
                        }
                        guard let length, length >= 0 else { return write(411, #"{"title":"send Content-Length"}"#) }
                        guard length <= Self.maxBodyBytes else { return write(413, #"{"title":"the body is too large"}"#) }
                        while buffer.count < length {
                            guard read(into: &buffer) else { return }
                        }
                        let body = Data(buffer[..<length])
                        buffer.removeFirst(length)
                        guard authorized, token.count > 7 else {
                            write(401, #"{"title":"unauthorized"}"#)
                            if keepAlive { continue } else { return }
                        }
                        let (status, data) = answer(body)
                        write(status, data)
                        if !keepAlive { return }
                    }
                }

                func read(into buffer: inout [UInt8]) -> Bool {
                    var chunk = [UInt8](repeating: 0, count: 65536)
                    let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    guard count > 0 else { return false }
                    buffer += chunk[..<count]
                    return true
                }

                func write(_ status: Int, _ body: String) { write(status, Data(body.utf8)) }

                func write(_ status: Int, _ body: Data) {
                    let reasons = [200: "OK", 400: "Bad Request", 401: "Unauthorized", 411: "Length Required",
                                   413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error"]
                    var bytes = Array("HTTP/1.1 \(status) \(reasons[status] ?? "Status")\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
                    bytes += body
                    var offset = 0
                    while offset < bytes.count {
                        let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                        guard sent > 0 else { return }
                        offset += sent
                    }
                }

                func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
                    guard a.count == b.count else { return false }
                    return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
                }
            }

            """##,
        "main.swift": ##"""
            // Serves `handle` on $PORT until SIGTERM (the function protocol, in SluiceProtocol.swift).
            import SluiceProtocol

            serve(handle)

            """##,
        "tests/main.swift": ##"""
            // __NAME__'s own tests: `sh build.sh test` in this folder (swiftc only, no package needed).
            import Foundation
            import SluiceProtocol

            var checks = 0, failures = 0
            func check(_ condition: Bool, _ what: String, line: Int = #line) {
                checks += 1
                if !condition {
                    failures += 1
                    print("FAIL (tests/main.swift:\(line)): \(what)")
                }
            }

            // handle: the event types in config.drop_types are dropped, the others kept.
            func dropReason(_ outcome: Outcome<Output>) -> String? { if case .drop(let reason) = outcome { reason } else { nil } }
            func isKept(_ outcome: Outcome<Output>) -> Bool { if case .keep = outcome { true } else { false } }
            let config = Config(drop_types: ["logout"])
            check(dropReason(try handle(Input(event_type: "logout"), config: config)) == "unwanted_type", "a logout is dropped as unwanted_type")
            check(isKept(try handle(Input(event_type: "purchase"), config: config)), "a purchase goes on as it came")
            check(isKept(try handle(Input(event_type: nil), config: Config(drop_types: nil))), "with no config, every event goes on")

            // The protocol: a chunk as Sluice sends it, answered with one outcome per event, in order.
            let chunk = #"{"events": [{"event_type": "purchase"}, {"event_type": "logout"}, 7, {"event_type": 3}], "config": {"drop_types": ["logout"]}}"#
            let (status, body) = respond(to: Data(chunk.utf8), with: handle)
            check(status == 200, "the answer's status is 200, not \(status)")
            let outcomes = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["outcomes"] as? [[String: String]] ?? []
            check(outcomes == [
                ["outcome": "forward"],
                ["outcome": "drop", "reason": "unwanted_type"],
                ["outcome": "quarantine", "reason": "wrong_type"],
                ["outcome": "quarantine", "reason": "wrong_type", "field": "event_type"],
            ], "the outcomes: \(String(decoding: body, as: UTF8.self))")

            // A manifest without config sends none (or null): Config is decoded from {}. One that does not
            // fit Config dead-letters the chunk, whose events would all fail alike.
            for request in [#"{"events": [{"event_type": "logout"}]}"#, #"{"events": [{"event_type": "logout"}], "config": null}"#] {
                let (status, body) = respond(to: Data(request.utf8), with: handle)
                check(status == 200 && String(decoding: body, as: UTF8.self) == #"{"outcomes":[{"outcome":"forward"}]}"#,
                      "without config: \(String(decoding: body, as: UTF8.self))")
            }
            let misfit = respond(to: Data(#"{"events": [{}], "config": {"drop_types": "logout"}}"#.utf8), with: handle)
            let deadLetter = (try? JSONSerialization.jsonObject(with: misfit.1) as? [String: Any])?["dead_letter"] as? [String: String]
            check(misfit.0 == 200 && deadLetter?["code"] == "bad_config", "a config that does not fit: \(String(decoding: misfit.1, as: UTF8.self))")

            print(failures == 0 ? "\(checks) checks passed" : "\(failures) of \(checks) checks failed")
            exit(failures == 0 ? 0 : 1)

            """##,
        "build.sh": ##"""
            #!/bin/sh
            # Builds __NAME__: `sh build.sh` writes .build/__NAME__ (sluice dev runs this before starting it and
            # after each change: an edit to handler.swift rebuilds in about half a second); `sh build.sh test`
            # builds and runs tests/main.swift; `sh build.sh release` writes an optimized .build/__NAME__ (an image).
            set -eu
            cd "$(dirname "$0")"
            mode=${1:-debug}
            case "$mode" in
              release) flags="-O" ;;
              debug | test) flags="-Onone" ;;
              *) echo "usage: sh build.sh [debug|test|release]" >&2; exit 2 ;;
            esac
            mkdir -p ".build/$mode"
            # The protocol's module: built again only when SluiceProtocol.swift (or the mode) changes.
            if ! cmp -s SluiceProtocol.swift ".build/$mode/SluiceProtocol.swift"; then
              swiftc $flags -parse-as-library -module-name SluiceProtocol -emit-module -emit-module-path ".build/$mode/SluiceProtocol.swiftmodule" \
                -c SluiceProtocol.swift -o ".build/$mode/SluiceProtocol.o"
              cp SluiceProtocol.swift ".build/$mode/SluiceProtocol.swift"
            fi
            if [ "$mode" = test ]; then
              swiftc $flags -module-name Function -I ".build/$mode" handler.swift tests/main.swift ".build/$mode/SluiceProtocol.o" -o .build/__NAME__-tests
              exec .build/__NAME__-tests
            fi
            swiftc $flags -module-name Function -I ".build/$mode" handler.swift main.swift ".build/$mode/SluiceProtocol.o" -o .build/__NAME__.new
            mv .build/__NAME__.new .build/__NAME__

            """##,
        "README.md": ##"""
            # __NAME__

            A Sluice function in Swift: one file of yours (`handler.swift`), Foundation only, no package.

            - Test it: `sh build.sh test` in this folder.
            - Run it: put `__NAME__` in a dataset's `chain` (for instance `datasets/events.yaml`:
              `chain: [validate, enrich, transform, __NAME__, load]`), then `make dev` (or `sluice dev`).
              Sluice runs `sh build.sh` and starts `.build/__NAME__`; when a file here changes it builds again
              (about half a second: `SluiceProtocol.swift` is compiled once) and restarts the process, and the
              old one serves until the new build is ready. A build that fails is logged and the old process kept.
            - Try it alone: `echo '[{"event_type": "logout"}, {"event_type": "purchase"}]' | sluice invoke __NAME__`.
            - Deploy it: `sh build.sh release` gives an optimized `.build/__NAME__` for an image (set
              `runtime.image`); `sluice render k8s` gives it a Deployment of its own.

            For a Swift function inside Sluice's own process (typed, no HTTP hop, the whole CLI in your
            binary), write a package instead: `sluice new NAME --lang swift --package`.

            The protocol (request, outcomes, status codes, timeouts) is docs/function-protocol.md in Sluice.

            """##,
        ".gitignore": ##"""
            .build/

            """##,
    ]
}
