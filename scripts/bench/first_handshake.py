#!/usr/bin/env python3
"""Times TLS handshakes with the router for hosts it has issued no
certificate for yet (the first handshake of each host signs a new leaf),
then for the same hosts again (served from the router's cache). Only the
handshake is timed, not the TCP connect. Prints JSON.

usage: first_handshake.py PORT CAFILE APP PREFIX N"""

import json
import socket
import ssl
import sys
import time

port, cafile, app, prefix, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cafile)


def handshake_ms(host):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = time.perf_counter()
    s = ctx.wrap_socket(raw, server_hostname=host)
    ms = (time.perf_counter() - t) * 1000
    s.close()
    return ms


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


hosts = [f"{prefix}{i:04d}.{app}.localhost" for i in range(n)]
first = [handshake_ms(h) for h in hosts]
again = [handshake_ms(h) for h in hosts]
print(json.dumps({"n": n, "first_p50": pct(first, 0.5), "first_p99": pct(first, 0.99),
                  "again_p50": pct(again, 0.5), "again_p99": pct(again, 0.99)}))
