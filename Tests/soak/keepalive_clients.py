#!/usr/bin/env python3
"""Keep-alive clients for shutdown_under_load.sh: N threads, each sending requests back-to-back on one keep-alive
connection (reconnecting when the server closes it) until DURATION s pass or connecting is refused.

Unlike wrk, which cannot tell a dropped request from a refused connection (a refused non-blocking connect shows up as
a *write* error, a close with a request outstanding as a *read* error), this records exactly, per exchange:

* ok            a complete response arrived
* close_header  ... and it said `Connection: close` (the server announced the close, as a draining server should)
* dropped       the request was written and the connection closed (EOF/RST) before a complete response: an
                accepted request that never completed
* closed_idle   the connection was found closed before the request could be written (EPIPE/RST on send)
* refused       a new connection was refused

    keepalive_clients.py PORT N DURATION_S TOKEN OUT_JSON
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time


def read_response(s: socket.socket) -> tuple[int, dict[str, str]] | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            return None
        rest += d
    return int(lines[0].split(" ")[1]), headers


def client(port: int, deadline: float, token: str, tid: int, stats: dict, lock: threading.Lock, events: list) -> None:
    local = {"ok": 0, "close_header": 0, "dropped": 0, "closed_idle": 0, "refused": 0, "statuses": {}}
    s = None
    n = 0
    while time.monotonic() < deadline:
        if s is None:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
            except ConnectionRefusedError:
                local["refused"] += 1
                break
            except OSError as e:
                events.append(f"client {tid}: connect error {e!r}")
                break
        n += 1
        req = (f"GET /api/ka-{tid}-{n} HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n"
               f"X-Request-Id: ka-{tid}-{n}\r\n\r\n").encode()
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            local["closed_idle"] += 1
            s.close()
            s = None
            continue
        try:
            resp = read_response(s)
        except (ConnectionResetError, socket.timeout) as e:
            resp = None
            events.append(f"client {tid}: request {n} {e.__class__.__name__}")
        if resp is None:
            local["dropped"] += 1
            events.append(f"client {tid}: request ka-{tid}-{n} written, connection closed before a response (t={time.time():.3f})")
            s.close()
            s = None
            continue
        status, headers = resp
        local["ok"] += 1
        local["statuses"][status] = local["statuses"].get(status, 0) + 1
        if headers.get("connection", "").lower() == "close":
            local["close_header"] += 1
            s.close()
            s = None
    if s is not None:
        s.close()
    with lock:
        for k in ("ok", "close_header", "dropped", "closed_idle", "refused"):
            stats[k] += local[k]
        for code, c in local["statuses"].items():
            stats["statuses"][str(code)] = stats["statuses"].get(str(code), 0) + c


def main() -> None:
    port, n, duration, token, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    stats = {"ok": 0, "close_header": 0, "dropped": 0, "closed_idle": 0, "refused": 0, "statuses": {}}
    events: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    threads = [threading.Thread(target=client, args=(port, deadline, token, i, stats, lock, events)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["events"] = events[:50]
    with open(out, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    main()
