#!/usr/bin/env python3
"""A listener for the outbound-policy end-to-end test: records every request as one JSON line.

  outbound_listener.py MODE ADDRESSES PORT LOGFILE [LOCATION]

MODE `trap` answers 200; MODE `redirect` answers 302 with `Location: LOCATION`. ADDRESSES is a
comma-separated list (`127.0.0.1,::1`): one socket per address, all on PORT.
"""
import http.server
import json
import socket
import sys
import threading

mode, addresses, port, log_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
location = sys.argv[5] if len(sys.argv) > 5 else ""
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def respond(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with lock, open(log_path, "a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path, "client": self.client_address[0]}) + "\n")
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", location)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_HEAD = respond

    def log_message(self, *args):
        pass


class Server4(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET


class Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


for address in addresses.split(","):
    server = (Server6 if ":" in address else Server4)((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()
