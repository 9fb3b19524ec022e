import Foundation
import Sluice
import Testing

/// A hostile process function under `sluice dev` with dev's own Redis and PostgreSQL (under
/// `.sluice/`): it looks for Sluice's secrets everywhere a third-party step could, and finds none.
@Suite(.serialized) struct HostileFunctionEndToEndTests {
    /// The spy, in Python's standard library. It listens on PORT (so that it is ready), reads
    /// what it can at once, waits for the test to name the ports of dev's servers (it cannot
    /// know them before dev prints them; a real attacker would scan), probes those and one
    /// server without a password, and writes what it obtained to SPY_OUT/report.json.
    static let spy = #"""
        import http.server, json, os, socket, stat, threading, time

        class Quiet(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args): pass
        if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
            server = http.server.HTTPServer(("127.0.0.1", 0), Quiet, bind_and_activate=False)
            server.socket = socket.socket(fileno=3)  # the socket Sluice bound for it
        else:
            server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        report = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "environment": sorted(os.environ)}
        secrets = [b"SLUICE_DATABASE_URL", b"SLUICE_REDIS_URL", b"SLUICE_JWT_SECRET", b"SLUICE_PSEUDONYM_KEY", b"SLUICE_GATEWAY_SIGNING_KEY"]

        def attempt(read):
            try:
                return {"ok": read()}
            except OSError as error:
                return {"errno": error.errno}

        report["self_environ"] = attempt(lambda: len(open("/proc/self/environ", "rb").read()))
        ancestors, pid = [], os.getppid()
        while pid > 1:
            entry = {"pid": pid, "cmdline": attempt(lambda: open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode())}
            entry["environ"] = attempt(lambda: [k.decode() for k in secrets if k in open(f"/proc/{pid}/environ", "rb").read()])
            entry["mem"] = attempt(lambda: open(f"/proc/{pid}/mem", "rb").close() or True)
            ancestors.append(entry)
            status = open(f"/proc/{pid}/status").read()
            pid = int(status.split("PPid:")[1].split()[0])
        report["ancestors"] = ancestors

        folder = os.environ["SPY_SLUICE_DIR"]
        report["listing"] = attempt(lambda: os.listdir(folder))
        report["files"] = {name: attempt(lambda: len(open(os.path.join(folder, name)).read()))
                           for name in ["jwt-secret", "gateway-signing-key", "pseudonym-key", "webhook-secret", "redis-password",
                                        "postgres-password", "redis.conf"]}
        report["postgres_data"] = attempt(lambda: os.listdir(os.path.join(folder, "pg")))
        report["postgres_socket"] = attempt(lambda: os.listdir(os.path.join(folder, "pgsock")))
        report["redis_data"] = attempt(lambda: os.listdir(os.path.join(folder, "redis")))
        tmp = os.environ.get("TMPDIR", "")
        info = os.stat(tmp)
        report["tmpdir"] = {"path": tmp, "mode": stat.S_IMODE(info.st_mode), "owner": info.st_uid, "home": os.environ.get("HOME")}

        def redis(port):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).decode(errors="replace")

        def postgres(port):
            # A startup message as user sluice: an answer R with code 0 would be "trusted, you are in".
            body = (196608).to_bytes(4, "big") + b"user\0sluice\0database\0sluice\0\0"
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall((len(body) + 4).to_bytes(4, "big") + body)
                answer = s.recv(64)
                return answer[:1].decode() + str(int.from_bytes(answer[5:9], "big"))

        targets = os.path.join(os.environ["SPY_OUT"], "targets.json")
        for _ in range(600):
            if os.path.exists(targets): break
            time.sleep(0.1)
        ports = json.load(open(targets))
        report["redis"] = {str(p): attempt(lambda: redis(p)) for p in ports["redis"]}
        report["postgres"] = {str(p): attempt(lambda: postgres(p)) for p in ports["postgres"]}
        with open(os.path.join(os.environ["SPY_OUT"], "report.tmp"), "w") as out:
            json.dump(report, out)
        os.rename(os.path.join(os.environ["SPY_OUT"], "report.tmp"), os.path.join(os.environ["SPY_OUT"], "report.json"))
        while True: time.sleep(60)
        """#

    /// One `sluice dev` run that starts its own Redis and PostgreSQL: the spy can read no
    /// ancestor's environment or memory, no file of `.sluice/`, and gets into neither server
    /// without the password; meanwhile the same reads succeed for the test (and the spy's probe
    /// does get into a Redis that has no password), so each check can fail. As root (CI) the
    /// spy runs as `nobody` with a private TMPDIR of mode 700.
    @Test func aHostileFunctionObtainsNoneOfSluicesSecrets() async throws {
        let environment = try TestEnvironment.get()
        let directory = try makeTemporaryDirectory("hostile")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = try makeSharedDirectory("hostile-report")  // the spy's user writes its report here
        defer { try? FileManager.default.removeItem(atPath: out) }
        try FileManager.default.createDirectory(atPath: "\(directory)/functions/spy", withIntermediateDirectories: true)
        try Self.spy.write(toFile: "\(directory)/functions/spy/spy.py", atomically: true, encoding: .utf8)
        try """
            runtime:
              command: [python3, spy.py]
              timeout: 5s
            triggers: [{stream: spy}]
            environment: {SPY_SLUICE_DIR: \(directory)/.sluice, SPY_OUT: \(out)}

            """.write(toFile: "\(directory)/functions/spy/function.yaml", atomically: true, encoding: .utf8)

        // dev in the temporary folder (its .sluice/ there), with no Redis or PostgreSQL given:
        // it starts its own, with passwords.
        let port = freePort()
        let dev = try SluiceProcess(binary: "/bin/sh", arguments: ["-c", "cd \"$0\" && exec \"$@\"", directory, environment.binary, "dev", "--port", "\(port)"],
                                    environment: ["SLUICE_FUNCTIONS_DIR": "\(directory)/functions", "SLUICE_GATEWAY_PUBLIC_KEY": ""],
                                    name: "dev", port: port, logDirectory: directory)
        defer { dev.signal(SIGKILL) }
        do {
            try await dev.waitReady(timeout: .seconds(120))
            let exports = Dictionary(dev.log.split(separator: "\n").filter { $0.hasPrefix("export ") }.compactMap { line -> (String, String)? in
                let pair = line.dropFirst("export ".count).split(separator: "=", maxSplits: 1).map(String.init)
                return pair.count == 2 ? (pair[0], pair[1]) : nil
            }) { $1 }
            let redisURL = try #require(URLComponents(string: exports["SLUICE_REDIS_URL"] ?? ""), "\(dev.tail())")
            let databaseURL = try #require(URLComponents(string: exports["SLUICE_DATABASE_URL"] ?? ""), "\(dev.tail())")
            let redisPort = try #require(redisURL.port), postgresPort = try #require(databaseURL.port)
            // Sluice's own URLs carry the passwords kept in .sluice/.
            let redisPassword = try String(contentsOfFile: "\(directory)/.sluice/redis-password", encoding: .utf8)
            let postgresPassword = try String(contentsOfFile: "\(directory)/.sluice/postgres-password", encoding: .utf8)
            #expect(redisPassword.count >= 32 && redisURL.password == redisPassword)
            #expect(postgresPassword.count >= 32 && databaseURL.password == postgresPassword)
            let testRedisPort = environment.redisBase.port
            let targets = "{\"redis\": [\(redisPort), \(testRedisPort)], \"postgres\": [\(postgresPort)]}"
            try targets.write(toFile: "\(out)/targets.json", atomically: true, encoding: .utf8)

            let deadline = ContinuousClock.now + .seconds(60)
            while !FileManager.default.fileExists(atPath: "\(out)/report.json"), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            let report = try JSONParser().parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(out)/report.json"))))

            // Its own environment: what docs/function-protocol.md lists, and nothing else (LC_CTYPE is
            // Python's own: it sets it when it coerces the C locale).
            let allowed: Set<String> = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONUNBUFFERED", "PORT", "LISTEN_FDS", "LISTEN_PID",
                                        "PWD", "SHLVL", "SLUICE_FUNCTION_NAME", "SLUICE_FUNCTION_TOKEN", "SPY_SLUICE_DIR", "SPY_OUT", "LC_CTYPE"]
            let names = Set(report["environment"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            #expect(names.contains("SLUICE_FUNCTION_TOKEN") && names.isSubset(of: allowed), "\(names.subtracting(allowed))")
            #expect(report["self_environ"]?["ok"] != nil, "the probe itself works: \(report)")
            // It listens on the socket Sluice bound for it: started once, never with PORT alone.
            #expect(names.isSuperset(of: ["LISTEN_FDS", "LISTEN_PID"]), "\(names)")
            #expect(!dev.log.contains("ended before it answered on the socket"), "\(dev.tail())")

            // The user and the private folder.
            let root = getuid() == 0
            if root {
                #expect(report["uid"]?.intValue == 65534 && report["gid"]?.intValue == 65534, "\(report)")
                #expect(report["groups"]?.arrayValue?.allSatisfy { $0.intValue == 65534 } == true, "\(report)")
            }
            let tmpdir = report["tmpdir"]
            #expect(tmpdir?["mode"]?.intValue == 0o700 && tmpdir?["owner"]?.intValue == report["uid"]?.intValue, "\(report)")
            #expect(tmpdir?["home"]?.stringValue == tmpdir?["path"]?.stringValue)

            // Sluice's environment and memory: closed to the spy (Sluice is non-dumpable; as root,
            // every ancestor belongs to another user). Readable by the test: the check can fail.
            let ancestors = report["ancestors"]?.arrayValue ?? []
            let sluice = try #require(ancestors.first, "\(report)")
            #expect(sluice["pid"]?.intValue.map(Int32.init) == dev.pid, "\(report)")
            #expect(sluice["cmdline"]?["ok"] != nil, "\(report)")
            for ancestor in root ? ancestors : [sluice] {
                #expect(ancestor["environ"]?["errno"]?.intValue == Int64(EACCES), "\(ancestor)")
                #expect(ancestor["mem"]?["errno"]?.intValue == Int64(EACCES), "\(ancestor)")
            }
            let sluiceEnvironment = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(dev.pid)/environ"))
            #expect(sluiceEnvironment.count > 0 && String(decoding: sluiceEnvironment, as: UTF8.self).contains("SLUICE_FUNCTIONS_DIR"))

            // .sluice/: no file, no listing, no server data; the test reads them.
            let files = report["files"]?.objectValue ?? [:]
            #expect(files.count == 7)
            for (name, result) in files {
                #expect(result["errno"]?.intValue == Int64(EACCES), "\(name): \(result)")
            }
            if root {
                for key in ["listing", "postgres_data", "postgres_socket", "redis_data"] {
                    #expect(report[key]?["errno"]?.intValue == Int64(EACCES), "\(key): \(report)")
                }
            }
            for name in ["jwt-secret", "gateway-signing-key", "pseudonym-key", "webhook-secret"] {
                let secret = try String(contentsOfFile: "\(directory)/.sluice/\(name)", encoding: .utf8)
                #expect(secret.count >= 32, "\(name)")
            }

            // dev's servers want the password; the test's server (no password) lets the same probe in.
            #expect(report["redis"]?["\(redisPort)"]?["ok"]?.stringValue?.hasPrefix("-NOAUTH") == true, "\(report)")
            #expect(report["redis"]?["\(testRedisPort)"]?["ok"]?.stringValue?.hasPrefix("+PONG") == true, "the probe works: \(report)")
            #expect(report["postgres"]?["\(postgresPort)"]?["ok"]?.stringValue == "R10", "SASL (scram-sha-256), not R0 (trust): \(report)")
            let authenticated = try await Self.redis(port: redisPort, send: "AUTH \(redisPassword)\r\nPING\r\n")
            #expect(authenticated.hasPrefix("+OK\r\n+PONG"), "\(authenticated)")
        } catch {
            Issue.record("\(error)\n\(dev.tail(60))")
        }
        await dev.stop()
        // dev stopped its servers (with the password).
        #expect(!dev.log.contains("\"level\":\"error\""), "\(dev.tail(60))")
    }

    /// A function that reports what it could read of its parent, Sluice: its environment and memory.
    static let peek = #"""
        import json, os, socket
        from http.server import BaseHTTPRequestHandler, HTTPServer
        def look(path):
            try: return "read %d bytes" % len(open(path, "rb").read())
            except OSError as error: return "errno %d" % error.errno
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.headers.get("Authorization") != "Bearer " + os.environ["SLUICE_FUNCTION_TOKEN"]:
                    self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers(); return
                chunk = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                found = {"uid": os.getuid(), "parent": os.getppid(), "parent_environ": look(f"/proc/{os.getppid()}/environ"),
                         "parent_mem": look(f"/proc/{os.getppid()}/mem"), "self_environ": look("/proc/self/environ")}
                body = json.dumps({"outcomes": [{"outcome": "forward", "event": dict(e, found=found)} for e in chunk["events"]]}).encode()
                self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
            def log_message(self, *args): pass
        server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket = socket.socket(fileno=3)
        server.serve_forever()
        """#

    /// Where Sluice cannot give the function another user (it does not run as root), its
    /// process runs as Sluice's own user, and only Sluice being non-dumpable keeps its environment
    /// and memory closed: `sluice invoke` run as `nobody` (as root, through setpriv; otherwise as
    /// the test's user, the same case) starts a function that reads its parent's
    /// `/proc/PID/environ` and `/proc/PID/mem`, and gets EACCES, while it reads its own.
    @Test func aFunctionOfSluicesOwnUserCannotReadItsEnvironmentOrMemory() async throws {
        let environment = try TestEnvironment.get()
        let directory = try makeSharedDirectory("peek")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        chmod(directory, 0o755)
        try FileManager.default.createDirectory(atPath: "\(directory)/functions/peek", withIntermediateDirectories: true)
        try Self.peek.write(toFile: "\(directory)/functions/peek/peek.py", atomically: true, encoding: .utf8)
        try "runtime: {command: [python3, peek.py], timeout: 5s}\ntriggers: [{stream: peek}]\n"
            .write(toFile: "\(directory)/functions/peek/function.yaml", atomically: true, encoding: .utf8)
        let variables = ["PATH=/usr/bin:/bin", "HOME=\(directory)", "SLUICE_REDIS_URL=\(environment.redisURL(db: 29))",
                         "SLUICE_DATABASE_URL=\(environment.databaseURL)", "SLUICE_FUNCTIONS_DIR=\(directory)/functions", "SLUICE_LOG_LEVEL=error"]
        let root = getuid() == 0
        let command = (root ? ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"] : [])
            + ["/usr/bin/env", "-i"] + variables + [environment.binary, "invoke", "peek"]
        let invoked = try await runCommand(command[0], Array(command.dropFirst()), input: Data(#"[{"event_id": "x"}]"#.utf8))
        #expect(invoked.status == 0, "\(invoked.error)")
        let found = try JSONParser().parse(Array(invoked.output.utf8))["outcomes"]?[0]?["event"]?["found"]
        #expect(found?["uid"]?.intValue == Int64(root ? 65534 : getuid()), "\(invoked.output)")
        #expect(found?["parent_environ"]?.stringValue == "errno 13", "\(invoked.output)")
        #expect(found?["parent_mem"]?.stringValue == "errno 13", "\(invoked.output)")
        #expect(found?["self_environ"]?.stringValue?.hasPrefix("read ") == true, "the probe works: \(invoked.output)")
    }

    /// Sends `text` to 127.0.0.1:`port` and answers what comes back within a second.
    static func redis(port: Int, send text: String) async throws -> String {
        let result = try await runCommand("/usr/bin/python3", ["-c", """
            import socket, sys, time
            s = socket.create_connection(("127.0.0.1", \(port)), timeout=2)
            s.sendall(sys.stdin.buffer.read())
            time.sleep(0.3)
            sys.stdout.write(s.recv(256).decode())
            """], input: Data(text.utf8))
        return result.output
    }
}
