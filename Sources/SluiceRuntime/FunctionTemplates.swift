import ArgumentParser

/// The files `sluice new` writes, per language. Placeholders: `__NAME__` (the function's name),
/// `__TYPE__` (its name as a Swift type), `__SLUICE__` (the path of Sluice's source).
enum FunctionTemplates {
    enum Language: String, ExpressibleByArgument, CaseIterable, Sendable {
        case python, node, swift
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, (0x61...0x7A).contains(first), name.utf8.count <= 40, !name.hasSuffix("-") else { return false }
        return name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }

    /// `fraud-score` → `FraudScore`.
    static func typeName(_ name: String) -> String {
        name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    /// The root of the source this binary was built from (Sources/SluiceRuntime/ is two levels down).
    static let sourceRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    static func files(name: String, language: Language, package: Bool = false, sluicePath: String) -> [String: String] {
        let templates: [String: String]
        switch language {
        case .python: templates = python
        case .node: templates = node
        case .swift: templates = package ? swiftPackage : swiftProcess
        }
        var files: [String: String] = [:]
        for (path, text) in templates {
            let fill = { (text: String) in
                text.replacingOccurrences(of: "__NAME__", with: name)
                    .replacingOccurrences(of: "__TYPE__", with: typeName(name))
                    .replacingOccurrences(of: "__SLUICE__", with: sluicePath)
            }
            files[fill(path)] = fill(text)
        }
        return files
    }

    static func nextSteps(name: String, language: Language, package: Bool = false, folder: String) -> String {
        switch language {
        case .swift where !package:
            return "\nnext: (cd \(folder) && sh build.sh test), then put \(name) in a dataset's chain (datasets/NAME.yaml) and run `make dev`"
        case .python:
            return "\nnext: (cd \(folder) && python3 -m unittest), then put \(name) in a dataset's chain (datasets/NAME.yaml) and run `make dev`"
        case .node:
            return "\nnext: (cd \(folder) && node --test), then put \(name) in a dataset's chain (datasets/NAME.yaml) and run `make dev`"
        case .swift:
            return "\nnext: (cd \(folder) && swift test), then see \(folder)/README.md to run it with the pipeline"
        }
    }

    static let manifestCommon = #"""
        triggers:
          - stream: __NAME__
        # A dataset's chain may name it (datasets/NAME.yaml, or POST /api/v1/datasets).
        expose: [step]
        # pii-mask runs before your code sees a chunk: declared personal data never reaches it.
        middleware: [pii-mask]
        batch: 500
        concurrency: 2
        retry: {max_attempts: 5, initial_backoff: 200ms, max_backoff: 5s}
        # Sent with every chunk (chunk["config"]).
        config:
          drop_types: [logout]

        """#

    static let python: [String: String] = [
        "function.yaml": #"""
            # __NAME__: a Sluice function in Python (standard library only), a process Sluice starts and
            # calls over its function protocol (docs/function-protocol.md in Sluice's source).
            description: Forwards each event, drops those of the event types in config.drop_types.
            runtime:
              command: [python3, handler.py]
              timeout: 10s

            """# + manifestCommon,
        "handler.py": #"""
            """__NAME__: a Sluice function. Sluice POSTs one chunk at a time to this process and turns the
            answer into outcomes: forward (the event, changed or not), drop or quarantine, with a reason.
            `python3 handler.py` listens on $PORT; `sluice dev` restarts it when this file changes.
            """
            import hmac
            import json
            import os
            import signal
            import socket
            import sys
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

            TOKEN = os.environ.get("SLUICE_FUNCTION_TOKEN", "")


            def handle_event(event, config):
                """Decides one event. Change this: it is your function."""
                if not isinstance(event, dict):
                    return {"outcome": "quarantine", "reason": "not_an_object"}
                if event.get("event_type") in config.get("drop_types", []):
                    return {"outcome": "drop", "reason": "unwanted_type"}
                return {"outcome": "forward", "event": event}


            def handle(chunk):
                """One outcome per event, in order."""
                config = chunk.get("config") or {}
                return {"outcomes": [handle_event(event, config) for event in chunk["events"]]}


            class Handler(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                # Headers and body leave as they are written: with Nagle, each answer waits for a delayed ACK (40 ms).
                disable_nagle_algorithm = True

                def do_POST(self):
                    # Only Sluice may call: it sends the token it started this process with.
                    if not TOKEN or not hmac.compare_digest(self.headers.get("Authorization", ""), "Bearer " + TOKEN):
                        return self.answer(401, {"title": "unauthorized"})
                    length = int(self.headers.get("Content-Length", "0"))
                    try:
                        chunk = json.loads(self.rfile.read(length))
                    except ValueError:
                        return self.answer(400, {"title": "the body is not JSON"})
                    self.answer(200, handle(chunk))

                def answer(self, status, body):
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

                def log_message(self, *args):
                    pass


            def serve(port):
                """The server on the socket Sluice bound for this process (descriptor 3, LISTEN_FDS=1: no
                other local user can take its port first), or on 127.0.0.1:port when run by hand."""
                if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
                    server = ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
                    server.socket.close()
                    server.socket = socket.socket(fileno=3)
                    return server
                return ThreadingHTTPServer(("127.0.0.1", port), Handler)


            if __name__ == "__main__":
                # SIGTERM ends the process at once (Sluice sends it once the chunks in flight are
                # answered, or to reload): said explicitly, as a container's first process ignores it.
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                serve(int(os.environ["PORT"])).serve_forever()

            """#,
        "test_handler.py": #"""
            """__NAME__'s own test (standard library): `python3 -m unittest` in this folder."""
            import json
            import os
            import threading
            import unittest
            import urllib.error
            import urllib.request

            os.environ["SLUICE_FUNCTION_TOKEN"] = "test-token-of-sixteen-chars"
            import handler  # noqa: E402  (reads the token as it loads)


            class HandleTest(unittest.TestCase):
                def test_forwards_drops_and_quarantines(self):
                    answer = handler.handle({"config": {"drop_types": ["logout"]},
                                             "events": [{"event_type": "purchase"}, {"event_type": "logout"}, 7]})
                    self.assertEqual(answer["outcomes"], [
                        {"outcome": "forward", "event": {"event_type": "purchase"}},
                        {"outcome": "drop", "reason": "unwanted_type"},
                        {"outcome": "quarantine", "reason": "not_an_object"},
                    ])


            class ServerTest(unittest.TestCase):
                """The process as Sluice calls it: over HTTP, with the token."""

                def setUp(self):
                    self.server = handler.serve(0)
                    threading.Thread(target=self.server.serve_forever, daemon=True).start()
                    self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

                def tearDown(self):
                    self.server.shutdown()
                    self.server.server_close()

                def post(self, body, token):
                    request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                                     headers={"Content-Type": "application/json",
                                                              "Authorization": f"Bearer {token}"})
                    return urllib.request.urlopen(request, timeout=5)

                def test_one_outcome_per_event(self):
                    with self.post({"config": {}, "events": [{"a": 1}, {"b": 2}]}, handler.TOKEN) as response:
                        self.assertEqual(response.status, 200)
                        self.assertEqual(len(json.loads(response.read())["outcomes"]), 2)

                def test_another_token_is_refused(self):
                    with self.assertRaises(urllib.error.HTTPError) as refused:
                        self.post({"events": []}, "not-the-token")
                    self.assertEqual(refused.exception.code, 401)


            if __name__ == "__main__":
                unittest.main()

            """#,
        "README.md": #"""
            # __NAME__

            A Sluice function in Python (standard library only).

            - Test it: `python3 -m unittest` in this folder.
            - Run it: put `__NAME__` in a dataset's `chain` (for instance `datasets/events.yaml`:
              `chain: [validate, enrich, transform, __NAME__, load]`), then `make dev` (or `sluice dev`).
              Sluice starts `python3 handler.py` and restarts it within a second when a file here changes.
            - Try it alone: `echo '[{"event_type": "logout"}, {"event_type": "purchase"}]' | sluice invoke __NAME__`.
            - Deploy it: `sluice render k8s` gives it a Deployment of its own.

            The protocol (request, outcomes, status codes, timeouts) is docs/function-protocol.md in Sluice.

            """#,
    ]

    static let node: [String: String] = [
        "function.yaml": #"""
            # __NAME__: a Sluice function in Node.js (no packages), a process Sluice starts and calls over
            # its function protocol (docs/function-protocol.md in Sluice's source).
            description: Forwards each event, drops those of the event types in config.drop_types.
            runtime:
              command: [node, handler.js]
              timeout: 10s

            """# + manifestCommon,
        "handler.js": #"""
            // __NAME__: a Sluice function. Sluice POSTs one chunk at a time to this process and turns the
            // answer into outcomes: forward (the event, changed or not), drop or quarantine, with a reason.
            // `node handler.js` listens on $PORT; `sluice dev` restarts it when this file changes.
            'use strict';
            const http = require('node:http');
            const crypto = require('node:crypto');

            const TOKEN = process.env.SLUICE_FUNCTION_TOKEN || '';

            // Decides one event. Change this: it is your function.
            function handleEvent(event, config) {
              if (event === null || typeof event !== 'object' || Array.isArray(event)) {
                return { outcome: 'quarantine', reason: 'not_an_object' };
              }
              if ((config.drop_types || []).includes(event.event_type)) return { outcome: 'drop', reason: 'unwanted_type' };
              return { outcome: 'forward', event };
            }

            // One outcome per event, in order.
            function handle(chunk) {
              const config = chunk.config || {};
              return { outcomes: chunk.events.map((event) => handleEvent(event, config)) };
            }

            function authorized(header) {
              const expected = Buffer.from('Bearer ' + TOKEN);
              const given = Buffer.from(header || '');
              return TOKEN !== '' && given.length === expected.length && crypto.timingSafeEqual(given, expected);
            }

            function answer(response, status, body) {
              const data = JSON.stringify(body);
              response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
              response.end(data);
            }

            const server = http.createServer((request, response) => {
              // Only Sluice may call: it sends the token it started this process with.
              if (!authorized(request.headers.authorization)) return answer(response, 401, { title: 'unauthorized' });
              const parts = [];
              request.on('data', (part) => parts.push(part));
              request.on('end', () => {
                let chunk;
                try {
                  chunk = JSON.parse(Buffer.concat(parts).toString('utf8'));
                } catch {
                  return answer(response, 400, { title: 'the body is not JSON' });
                }
                answer(response, 200, handle(chunk));
              });
            });

            // Listens on the socket Sluice bound for it (descriptor 3, LISTEN_FDS=1: no other local user can
            // take its port first; $PORT when run by hand) until SIGTERM, then stops as soon as no answer is being written. Sluice
            // keeps its connections open between chunks (and may hold one it has not used yet, which
            // node's own close() would wait for): the idle ones are closed at once, the busy ones after
            // their answer.
            function serve(server, port) {
              const inFlight = new Map(); // socket → requests being answered
              let stopping = false;
              server.on('connection', (socket) => {
                inFlight.set(socket, 0);
                socket.on('close', () => inFlight.delete(socket));
              });
              server.on('request', (request, response) => {
                const socket = request.socket;
                inFlight.set(socket, (inFlight.get(socket) || 0) + 1);
                response.on('finish', () => {
                  if (!inFlight.has(socket)) return;
                  const left = inFlight.get(socket) - 1;
                  inFlight.set(socket, left);
                  if (stopping && left === 0) socket.end();
                });
              });
              const passed = process.env.LISTEN_FDS === '1' && process.env.LISTEN_PID === String(process.pid);
              server.listen(passed ? { fd: 3 } : { port, host: '127.0.0.1' });
              process.on('SIGTERM', () => {
                stopping = true;
                server.close(() => process.exit(0));
                for (const [socket, busy] of inFlight) if (busy === 0) socket.destroy();
              });
            }

            if (require.main === module) serve(server, Number(process.env.PORT));

            module.exports = { handle, authorized, server };

            """#,
        "handler.test.js": #"""
            // __NAME__'s own test, with node's test runner: `node --test` in this folder.
            'use strict';
            process.env.SLUICE_FUNCTION_TOKEN = 'test-token-of-sixteen-chars';
            const test = require('node:test');
            const assert = require('node:assert');
            const { handle, server } = require('./handler.js');

            test('forwards, drops and quarantines', () => {
              const answer = handle({ config: { drop_types: ['logout'] }, events: [{ event_type: 'purchase' }, { event_type: 'logout' }, 7] });
              assert.deepStrictEqual(answer.outcomes, [
                { outcome: 'forward', event: { event_type: 'purchase' } },
                { outcome: 'drop', reason: 'unwanted_type' },
                { outcome: 'quarantine', reason: 'not_an_object' },
              ]);
            });

            test('over HTTP: one outcome per event with the token, 401 without', async () => {
              await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
              const url = `http://127.0.0.1:${server.address().port}/`;
              try {
                const post = (token) => fetch(url, { method: 'POST', headers: { Authorization: `Bearer ${token}` },
                                                     body: JSON.stringify({ config: {}, events: [{ a: 1 }, { b: 2 }] }) });
                const ok = await post(process.env.SLUICE_FUNCTION_TOKEN);
                assert.strictEqual(ok.status, 200);
                assert.strictEqual((await ok.json()).outcomes.length, 2);
                assert.strictEqual((await post('not-the-token')).status, 401);
              } finally {
                server.close();
              }
            });

            """#,
        "README.md": #"""
            # __NAME__

            A Sluice function in Node.js (no packages).

            - Test it: `node --test` in this folder.
            - Run it: put `__NAME__` in a dataset's `chain` (for instance `datasets/events.yaml`:
              `chain: [validate, enrich, transform, __NAME__, load]`), then `make dev` (or `sluice dev`).
              Sluice starts `node handler.js` and restarts it within a second when a file here changes.
            - Try it alone: `echo '[{"event_type": "logout"}, {"event_type": "purchase"}]' | sluice invoke __NAME__`.
            - Deploy it: `sluice render k8s` gives it a Deployment of its own.

            The protocol (request, outcomes, status codes, timeouts) is docs/function-protocol.md in Sluice.

            """#,
    ]

    static let swiftPackage: [String: String] = [
        "Package.swift": #"""
            // swift-tools-version:6.2
            // __NAME__: a Sluice function in Swift. The package depends on Sluice and builds its own sluice
            // binary (__NAME__-sluice) with the function registered beside the built-in ones.
            import PackageDescription

            let package = Package(
                name: "__NAME__",
                platforms: [.macOS(.v15)],
                dependencies: [
                    .package(name: "sluice", path: "__SLUICE__"),
                ],
                targets: [
                    .target(name: "__TYPE__", dependencies: [.product(name: "SluiceRuntime", package: "sluice")]),
                    .executableTarget(name: "__NAME__-sluice", dependencies: ["__TYPE__", .product(name: "SluiceRuntime", package: "sluice")]),
                    .testTarget(name: "__TYPE__Tests", dependencies: ["__TYPE__", .product(name: "SluiceTesting", package: "sluice")]),
                ],
                swiftLanguageModes: [.v6]
            )

            """#,
        "Sources/__TYPE__/__TYPE__.swift": #"""
            import SluiceRuntime

            /// __NAME__: forwards each event, drops those of the event types in `config.drop_types`.
            /// Change it: it is your function. Sluice decodes each event as `Event`; one that does not
            /// decode is quarantined with the field at fault.
            public struct __TYPE__: CodableFunction {
                public struct Config: Decodable, Sendable {
                    var drop_types: [String]?
                }

                /// The fields the function reads (the others pass through untouched).
                public struct Event: Decodable, Sendable {
                    var event_type: String?
                }

                /// The fields the function sets on what it forwards.
                public struct Marked: Codable, Sendable, Equatable {
                    public var checked_by: String
                }

                let dropTypes: Set<String>

                public init(config: Config) {
                    dropTypes = Set(config.drop_types ?? [])
                }

                public func process(_ event: Event, context: FunctionContext) async throws -> CodableOutcome<Marked> {
                    if let type = event.event_type, dropTypes.contains(type) { return .drop(reason: "unwanted_type") }
                    return .forward(Marked(checked_by: "__NAME__"))
                }
            }

            """#,
        "Sources/__NAME__-sluice/main.swift": #"""
            import SluiceRuntime
            import __TYPE__

            // Sluice's whole command line (serve, dev, invoke, dlq, render, …) with __NAME__ registered.
            var app = SluiceApplication()
            app.register("__NAME__", __TYPE__.self)
            await app.run()

            """#,
        "Tests/__TYPE__Tests/__TYPE__Tests.swift": #"""
            import SluiceTesting
            import Testing
            import __TYPE__

            @Suite struct __TYPE__Tests {
                @Test func forwardsMarkedAndDropsUnwantedTypes() async throws {
                    let tester = try FunctionTester(__TYPE__.self, config: ["drop_types": ["logout"]])
                    let outcomes = try await tester.run([["event_type": "purchase", "id": "e-1"], ["event_type": "logout"]])
                    #expect(outcomes[1] == .drop(reason: "unwanted_type"))
                    guard case .forward(let event, _) = outcomes[0] else { Issue.record("not forwarded"); return }
                    #expect(event.value == ["event_type": "purchase", "id": "e-1", "checked_by": "__NAME__"])
                }

                @Test func aWrongTypeIsQuarantinedWithItsField() async throws {
                    let tester = try FunctionTester(__TYPE__.self)
                    #expect(try await tester.run([["event_type": 7]]) == [.quarantine(reason: "wrong_type", event: Event(["event_type": 7]), field: "event_type")])
                }
            }

            """#,
        "functions/__NAME__/function.yaml": #"""
            # __NAME__: compiled into this package's binary (__NAME__-sluice), registered as handler __NAME__.
            description: Forwards each event marked checked_by, drops those of the event types in config.drop_types.
            handler: __NAME__

            """# + manifestCommon,
        "README.md": #"""
            # __NAME__

            A Sluice function in Swift: a package that depends on Sluice (at `__SLUICE__`) and builds its own
            `sluice` binary, `__NAME__-sluice`, with every built-in function and `__NAME__`.

            - Test it: `swift test`.
            - Run it with the pipeline: copy `functions/__NAME__` into the functions folder, put `__NAME__` in a
              dataset's `chain`, then, with `SLUICE_FUNCTIONS_DIR` set to that folder,
              `swift run __NAME__-sluice dev --rebuild "swift build --product __NAME__-sluice"`: a change under
              `Sources/` rebuilds, and dev starts again on the new build (a rebuild takes seconds, not one).
            - Try it alone: `echo '[{"event_type": "logout"}]' | swift run __NAME__-sluice invoke __NAME__`.
            - Deploy it: build an image of `__NAME__-sluice` as Sluice's Dockerfile builds `sluice`, and
              `__NAME__-sluice render k8s` with `SLUICE_IMAGE` set to it.

            """#,
    ]
}
