#!/usr/bin/env python3
"""Opens N WebSocket upgrades through the router (Host ws.localhost), holds
them for HOLD seconds, and checks that every tunnel still echoes at the start,
every 10 s and at the end. Samples the router's RSS while they are open.

usage: ws_hold.py ROUTER_PORT N HOLD_SECS ROUTER_PID
Prints one JSON object: opened, errors (first few), error_count, rss_kb_max.
"""

import asyncio
import json
import sys

REQ = (b"GET /ws HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
       b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def open_one(port, sem):
    async with sem:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        w.write(REQ)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace"))
        return r, w


async def echo(conn, n):
    r, w = conn
    msg = b"ping %d\n" % n
    w.write(msg)
    got = await asyncio.wait_for(r.readexactly(len(msg)), 30)
    if got != msg:
        raise RuntimeError("echo mismatch")


async def main():
    port, n, hold, pid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    sem = asyncio.Semaphore(200)
    errors = []
    results = await asyncio.gather(*(open_one(port, sem) for _ in range(n)), return_exceptions=True)
    conns = [c for c in results if not isinstance(c, BaseException)]
    errors += [f"open: {e!r}" for e in results if isinstance(e, BaseException)]
    rss_max = rss_kb(pid)
    loop = asyncio.get_running_loop()
    end = loop.time() + hold
    round_ = 0
    while True:
        res = await asyncio.gather(*(echo(c, round_) for c in conns), return_exceptions=True)
        errors += [f"echo {round_}: {e!r}" for e in res if isinstance(e, BaseException)]
        rss_max = max(rss_max, rss_kb(pid))
        round_ += 1
        left = end - loop.time()
        if left <= 0:
            break
        await asyncio.sleep(min(10, left))
    for _, w in conns:
        w.close()
    print(json.dumps({"opened": len(conns), "error_count": len(errors), "errors": errors[:5],
                      "rss_kb_max": rss_max, "echo_rounds": round_}))


asyncio.run(main())
