"""A no-op Sluice function: every event forwarded unchanged (the hop benchmark's Python side)."""
import hmac
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "Bearer " + os.environ.get("SLUICE_FUNCTION_TOKEN", "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave as they are written: with Nagle, each answer waits for a delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_POST(self):
        if not hmac.compare_digest(self.headers.get("Authorization", ""), TOKEN):
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        chunk = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        data = json.dumps({"outcomes": [{"outcome": "forward"}] * len(chunk["events"])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
    # The socket Sluice bound for this process (descriptor 3): no other local user can take its port first.
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
else:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.serve_forever()
