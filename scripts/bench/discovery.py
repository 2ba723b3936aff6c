#!/usr/bin/env python3
"""Discovery latency, for scripts/bench.sh.

For each of N fresh listeners: starts a small HTTP server (srv.py) under the
shim (LD_PRELOAD, as `agentfs wrap` would), which prints CLOCK_MONOTONIC just
before its listen(); meanwhile polls the router for <instance>.disc.localhost
on a kept-alive connection until the first 200. listen -> first routed 200 is
the discovery latency. Then SIGKILLs the server and polls the router's
read-only route list (/api/routes on Host localhost, so no request reaches the
dead socket and triggers the 502 sweep) until the instance is gone.

Prints one JSON object: {"up_ms": [...], "gone_ms": [...], "errors": [...]}.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def poll_until(port, host, path, done, limit_s):
    """Polls GET path with Host `host` until done(status, body); returns the
    CLOCK_MONOTONIC ns of the response that satisfied it, or None."""
    deadline = time.monotonic() + limit_s
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        while time.monotonic() < deadline:
            try:
                conn.request("GET", path, headers={"Host": host, "Accept": "application/json"})
                res = conn.getresponse()
                body = res.read()
                now = time.monotonic_ns()
                if done(res.status, body):
                    return now
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            time.sleep(0.0002)
        return None
    finally:
        conn.close()


def listed(body, instance):
    try:
        routes = json.loads(body)
    except ValueError:
        return True
    for app in routes.get("apps", []):
        if app.get("app") == "disc" and any(i.get("instance") == instance for i in app.get("instances", [])):
            return True
    return False


def one(i, port, home, shim, out):
    instance = f"d{os.getpid()}x{i}"
    env = dict(os.environ, AGENTFS_HOME=home, AGENTFS_APP="disc", AGENTFS_INSTANCE=instance, LD_PRELOAD=shim)
    srv = subprocess.Popen([sys.executable, os.path.join(HERE, "srv.py"), "3000"], env=env,
                           stdout=subprocess.PIPE, text=True)
    try:
        up = poll_until(port, f"{instance}.disc.localhost", "/", lambda s, b: s == 200, 20)
        line = srv.stdout.readline().strip()
        if up is None or not line:
            out["errors"].append(f"{instance}: never routed")
            return
        out["up_ms"].append((up - int(line)) / 1e6)
        # Let the first request's connection settle, then kill.
        time.sleep(0.05)
        t_kill = time.monotonic_ns()
        srv.send_signal(signal.SIGKILL)
        srv.wait()  # reaped at once, as `agentfs wrap` reaps its child
        gone = poll_until(port, "localhost", "/api/routes", lambda s, b: s == 200 and not listed(b, instance), 20)
        if gone is None:
            out["errors"].append(f"{instance}: still routed 20 s after SIGKILL")
        else:
            out["gone_ms"].append((gone - t_kill) / 1e6)
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def main():
    port, home, shim, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = {"up_ms": [], "gone_ms": [], "errors": []}
    for i in range(count):
        one(i, port, home, shim, out)
        time.sleep(0.05)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
