"""A Sluice function in Python: scores each row and drops those below the threshold.

Sluice POSTs one chunk at a time to this process (docs/function-protocol.md) and turns the
answer into outcomes: forward (with the changed row), drop (with a reason) or quarantine.
Standard library only; `python3 handler.py` listens on $PORT.
"""
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("SLUICE_FUNCTION_TOKEN", "")
# Where the test asks this function to write down what it received (unset: nothing is written).
RECORD = os.environ.get("SCORE_RECORD_FILE")


def score(row, config):
    """The row's score: its event type's weight, nudged by a stable hash of its id."""
    weights = config.get("weights", {})
    base = float(weights.get(row.get("event_type"), 0.1))
    nudge = int(hashlib.sha256(str(row.get("event_id", "")).encode()).hexdigest()[:4], 16) / 0xFFFF
    return round(base * 0.8 + nudge * 0.2, 4)


def handle(chunk):
    """One outcome per event, in order."""
    config = chunk.get("config", {})
    threshold = float(config.get("threshold", 0))
    outcomes = []
    for row in chunk["events"]:
        if not isinstance(row, dict):
            outcomes.append({"outcome": "quarantine", "reason": "not_an_object"})
            continue
        value = score(row, config)
        if value < threshold:
            outcomes.append({"outcome": "drop", "reason": "low_score"})
        else:
            outcomes.append({"outcome": "forward", "event": dict(row, score=value)})
    return {"outcomes": outcomes}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave as they are written: with Nagle, each answer waits for a delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def do_POST(self):
        # Only Sluice calls this function: it sends the token it started the process with.
        given = self.headers.get("Authorization", "")
        if not TOKEN or not hmac.compare_digest(given, "Bearer " + TOKEN):
            return self.answer(401, {"title": "unauthorized"})
        length = int(self.headers.get("Content-Length", "0"))
        chunk = json.loads(self.rfile.read(length))
        if RECORD:
            with open(RECORD, "a", encoding="utf-8") as out:
                out.write(json.dumps(chunk["events"]) + "\n")
        self.answer(200, handle(chunk))

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass  # one line per chunk would drown Sluice's own logs


def serve(port):
    """The server on the socket Sluice bound for this process (descriptor 3, LISTEN_FDS=1: no other
    local user can take its port first), or on 127.0.0.1:port when run by hand."""
    if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = socket.socket(fileno=3)
        return server
    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


if __name__ == "__main__":
    server = serve(int(os.environ.get("PORT", "8080")))
    print("score listening on", server.server_address[1], file=sys.stderr, flush=True)
    # SIGTERM ends the process at once, said explicitly: a container's first process ignores it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
