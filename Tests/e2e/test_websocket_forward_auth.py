"""WebSocket tunnelling after authentication, the forward-auth endpoint, and the header-read timeout."""
from __future__ import annotations

import os
import socket
import time

import httpx
import pytest
from websockets.sync.client import connect

from conftest import mint, start_sidecar


def test_websocket_echo_through_the_proxy(sidecar, token):
    url = sidecar["url"].replace("http://", "ws://") + "/ws"
    with connect(url, additional_headers={"Cookie": f"authjs.session-token={token}", "X-Auth-Sub": "spoofed"}) as ws:
        for i in range(20):
            ws.send(f"hello-{i}")
            assert ws.recv(timeout=5) == f"user-1:hello-{i}"
        big = "x" * 200_000
        ws.send(big)
        assert ws.recv(timeout=5) == "user-1:" + big


def test_websocket_tunnel_idle_timeout(upstream, token):
    """A tunnel with traffic stays open past the idle timeout; one silent both ways is closed by the sidecar."""
    from websockets.exceptions import ConnectionClosed

    proc, port = start_sidecar(upstream["url"], {"SIDECAR_TUNNEL_IDLE_TIMEOUT": "1"})
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        # No client pings: the only bytes are the messages below.
        with connect(url, additional_headers={"Cookie": f"authjs.session-token={token}"}, ping_interval=None,
                     close_timeout=1) as ws:
            for i in range(6):  # 2 s of traffic, 0.4 s apart: longer than the timeout
                if i:
                    time.sleep(0.4)
                ws.send(f"tick-{i}")
                assert ws.recv(timeout=5) == f"user-1:tick-{i}"
            silent_from = time.monotonic()
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert 0.9 < time.monotonic() - silent_from < 3.0
    finally:
        proc.stop()


def test_websocket_upgrade_needs_a_token(sidecar):
    url = sidecar["url"].replace("http://", "ws://") + "/ws"
    with pytest.raises(Exception) as info:
        with connect(url):
            pass
    assert "401" in str(info.value)


def _exchange_raw(port: int, payload: bytes, wait: float = 3.0) -> tuple[bytes, bool]:
    """Sends `payload` on a fresh connection; returns what came back and whether the sidecar closed within `wait`."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(payload)
        got, deadline = b"", time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, False
            if not chunk:
                return got, True
            got += chunk
        return got, False


@pytest.mark.parametrize("with_token", [False, True], ids=["refused-401", "upstream-refuses"])
def test_an_upgrade_request_that_is_not_upgraded_ends_the_connection(sidecar, token, with_token):
    # After an upgrade request the bytes that follow belong to the new protocol, so they are never read as requests.
    # Answered with anything but a 101 (a 401 here, or the upstream's refusal of a path with no WebSocket), the answer
    # says Connection: close and the connection ends — before (NIO's decoder), it stayed open, reading nothing.
    cookie = f"Cookie: authjs.session-token={token}\r\n" if with_token else ""
    upgrade = (f"GET /api/echo HTTP/1.1\r\nHost: x\r\n{cookie}Connection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode()
    got, closed = _exchange_raw(sidecar["port"], upgrade + b"GET /docs/after HTTP/1.1\r\nHost: x\r\n\r\n")
    head = got.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 401") if not with_token else (head.startswith(b"http/1.1 ") and head[9:12] != b"101"), got[:300]
    assert b"\r\nconnection: close" in head, got[:300]
    assert got.count(b"HTTP/1.1 ") == 1, f"a request after the upgrade request was answered: {got!r}"
    assert closed, "the connection stayed open after the answer to an upgrade request"


def test_connection_close_in_request_trailers_ends_the_connection(sidecar):
    # The parser reads no request after chunked trailers that say Connection: close (as llhttp); the answer must say
    # close and the connection end at once — before, the answer said nothing and the connection idled to its timeout.
    post = (b"POST /public/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
            b"Connection: close\r\n\r\n")
    got, closed = _exchange_raw(sidecar["port"], post + b"GET /public/after HTTP/1.1\r\nHost: x\r\n\r\n")
    head = got.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200"), got[:300]
    assert b"\r\nconnection: close" in head, got[:300]
    assert got.count(b"HTTP/1.1 ") == 1, f"a request after the closing trailers was answered: {got!r}"
    assert closed, "the connection stayed open after the answer"


def test_forward_auth_endpoint(sidecar, token):
    url = sidecar["url"] + "/_sidecar/auth"
    r = httpx.get(url, headers={"Cookie": f"authjs.session-token={token}", "X-Forwarded-Uri": "/api/x", "X-Forwarded-Method": "GET"})
    assert r.status_code == 200 and r.content == b""
    assert r.headers["x-auth-sub"] == "user-1" and r.headers["x-auth-email"] == "ada@example.com"
    r = httpx.get(url, headers={"X-Forwarded-Uri": "/api/x"})
    assert r.status_code == 401 and r.json()["reason"] == "missing_token"
    # the original URI decides the route: a public path needs no token
    r = httpx.get(url, headers={"X-Original-URI": "/docs/page", "X-Auth-Sub": "spoofed"})
    assert r.status_code == 200 and "x-auth-sub" not in r.headers


def test_header_timeout_closes_dribbling_connections():
    proc, port = start_sidecar("echo", {"SIDECAR_HEADER_TIMEOUT": "1", "SIDECAR_IDLE_TIMEOUT": "30"})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /public/x HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            closed = False
            while time.monotonic() - t0 < 4:
                try:
                    s.sendall(b"X-A: b\r\n")
                except OSError:
                    closed = True
                    break
                s.settimeout(0.3)
                try:
                    if s.recv(1024) == b"":
                        closed = True
                        break
                except socket.timeout:
                    pass
            assert closed and time.monotonic() - t0 < 2.5
        # an idle keep-alive connection is not subject to the header timeout
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(1.6)
            s.sendall(b"GET /public/y HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        proc.stop()


def test_token_cache_serves_repeated_sessions(sidecar):
    tok = mint('{"sub":"cached-user"}')
    for _ in range(3):
        r = httpx.get(sidecar["url"] + "/api/c", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200
        assert [v for k, v in r.json()["headers"] if k == "x-auth-sub"] == ["cached-user"]
    # a cached token is still bound to its scope and expiry: an expired one never comes from the cache
    expired = mint('{"sub":"old"}', "--now", "1700000000")
    assert httpx.get(sidecar["url"] + "/api/c", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_unix_sockets_json_log_traceparent_and_stripping(tmp_path, token):
    """Listener and upstream on unix sockets; JSON access log with the trace context; session cookie and Bearer
    stripped before forwarding when asked."""
    import json as _json
    import subprocess
    import sys

    from conftest import E2E, Proc

    up_sock, side_sock = str(tmp_path / "up.sock"), str(tmp_path / "side.sock")
    upstream = Proc([sys.executable, "-m", "uvicorn", "upstream_app:app", "--uds", up_sock, "--log-level", "warning"],
                    cwd=str(E2E), log_name="upstream-uds")
    sidecar = None
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(up_sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc, _ = start_sidecar(f"unix:{up_sock}", {"SIDECAR_LOG_FORMAT": "json", "SIDECAR_STRIP_COOKIE": "true",
                                                      "SIDECAR_STRIP_AUTHORIZATION": "true", "SIDECAR_LOG_LEVEL": "info"})
        proc.stop()  # the TCP instance only proved the unix upstream config loads; now the unix listener:
        sidecar = Proc([*_sidecar_cmd()], env=_env(up_sock, side_sock), log_name="sidecar-uds")
        while not os.path.exists(side_sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        transport = httpx.HTTPTransport(uds=side_sock)
        with httpx.Client(transport=transport, base_url="http://sidecar") as c:
            tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            r = c.get("/api/uds", headers={"Cookie": f"authjs.session-token={token}; theme=dark", "traceparent": tp,
                                           "tracestate": "vendor=abc"})
            assert r.status_code == 200
            seen = dict((k, v) for k, v in r.json()["headers"])
            assert seen["x-auth-sub"] == "user-1" and seen["cookie"] == "theme=dark"
            assert seen["traceparent"] == tp and seen["tracestate"] == "vendor=abc"
            r = c.get("/api/uds", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and "authorization" not in dict(r.json()["headers"])
        time.sleep(0.2)
        lines = [_json.loads(l) for l in sidecar.output().splitlines() if l.startswith("{")]
        access = [l for l in lines if l.get("path") == "/api/uds"]
        assert access and access[0]["traceparent"] == tp and access[0]["tracestate"] == "vendor=abc"
        assert access[0]["outcome"] == "ok" and access[0]["status"] == 200
        assert token not in sidecar.output()
    finally:
        if sidecar:
            sidecar.stop()
        upstream.stop()


def _sidecar_cmd():
    from conftest import binary
    return [binary(), "serve"]


def _env(up_sock, side_sock):
    from conftest import SECRET
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "AUTH_SECRET", "NEXTAUTH"))}
    env.update({"AUTH_SECRET": SECRET, "SIDECAR_LISTEN": f"unix:{side_sock}", "SIDECAR_UPSTREAM": f"unix:{up_sock}",
                "SIDECAR_LOG_FORMAT": "json", "SIDECAR_STRIP_COOKIE": "true", "SIDECAR_STRIP_AUTHORIZATION": "true"})
    return env
