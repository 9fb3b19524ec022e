#!/usr/bin/env python3
"""A webhook receiver for the end-to-end tests: records every request as one JSON line.

  webhook_receiver.py PORT LOGFILE

Answers by path: /fail-twice answers 500 to the first two requests of each Sluice-Delivery
and 200 after; /always-500 answers 500; /retry-after answers 429 with `Retry-After: 1` to the
first request of each delivery and 200 after; /redirect answers 302 to /hook; anything else
answers 200 "ok".
"""
import base64
import http.server
import json
import sys
import threading
import time

port, log_path = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
seen = {}


class Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # else delayed ACKs cap the receiver at ~25 requests/s
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        route = self.path.split("?")[0]
        key = (route, self.headers.get("Sluice-Delivery", ""))
        with lock:
            seen[key] = seen.get(key, 0) + 1
            count = seen[key]
            status, extra = 200, {}
            if route == "/fail-twice" and count <= 2:
                status = 500
            elif route == "/always-500":
                status = 500
            elif route == "/retry-after" and count == 1:
                status, extra = 429, {"Retry-After": "1"}
            elif route == "/redirect":
                status, extra = 302, {"Location": "/hook"}
            with open(log_path, "a") as log:
                log.write(json.dumps({"path": self.path, "time": time.time(), "status": status,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": base64.b64encode(body).decode()}) + "\n")
        reply = b"ok" if status == 200 else b"no"
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("listening", flush=True)
server.serve_forever()
