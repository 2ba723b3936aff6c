#!/usr/bin/env python3
"""Registers many instances with a router for the scale benchmark: binds and
listens on N Unix sockets named <app>.<prefix><i>.3000.sock in DIR (bare
sockets, which the router routes by their file names), then sleeps until
killed. Nothing is ever accepted: the sockets only need to exist.

usage: hold_sockets.py DIR APP PREFIX N"""

import os
import signal
import socket
import sys

d, app, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
held = []
for i in range(n):
    path = os.path.join(d, f"{app}.{prefix}{i:04d}.3000.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    held.append(s)
print("ready", flush=True)
signal.pause()
