#!/usr/bin/env python3
"""A tiny HTTP server for the discovery benchmark: listens on 127.0.0.1:<port>
(turned into a Unix socket by the shim when run under it) and prints
CLOCK_MONOTONIC in ns taken just before its listen() call."""

import http.server
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


class Server(http.server.HTTPServer):
    def server_activate(self):
        t = time.monotonic_ns()
        super().server_activate()
        print(t, flush=True)


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
