"""An upgraded connection's last bytes: when one side closes, what the sidecar still holds for the other side is
delivered before that side is closed (a close at once dropped it: found in review, nineteenth session).

Upstream: a raw TCP server that answers the upgrade with 101, sends 8 MiB and `END`, and closes at once; the client
reads slowly, so most of the 8 MiB is still inside the sidecar when the upstream's close arrives."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import start_sidecar

PAYLOAD = b"x" * (8 << 20) + b"END"


def raw_upstream(pause: float) -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            if pause:
                conn.sendall(head)
                time.sleep(pause)
                conn.sendall(PAYLOAD)
            else:  # the first bytes ride with the 101 (the splice once crashed on them)
                conn.sendall(head + PAYLOAD)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


@pytest.mark.parametrize("pause", [0.0, 0.3], ids=["with-the-101", "after-the-101"])
def test_the_last_bytes_before_the_upstream_closes_reach_a_slow_client(pause):
    srv, port = raw_upstream(pause)
    sidecar, sport = start_sidecar(f"http://127.0.0.1:{port}", {"SIDECAR_TUNNEL_IDLE_TIMEOUT": "30"})
    try:
        with socket.create_connection(("127.0.0.1", sport), timeout=20) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            c.sendall(b"GET /public/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                got += c.recv(65536)
            head, body = got.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
            time.sleep(1.0)  # the upstream has sent everything and closed; the sidecar holds the rest
            while True:
                chunk = c.recv(256 * 1024)
                if not chunk:
                    break
                body += chunk
                time.sleep(0.002)
        assert len(body) == len(PAYLOAD) and body.endswith(b"END"), f"client got {len(body)} of {len(PAYLOAD)} bytes"
    finally:
        sidecar.stop()
        srv.close()
