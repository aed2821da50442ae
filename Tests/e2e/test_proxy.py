"""End-to-end: the real sidecar in front of a real FastAPI app under uvicorn (and the built-in Swift echo upstream)."""
from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from conftest import (SECRET, binary, complete_responses, fd_count, mint, raw_exchange, rss_kib, start_sidecar,
                      start_upstream)

IDENTITY = ["X-Auth-Sub", "X-Auth-Email", "X-Auth-Name", "X-Auth-Picture", "X-Auth-Claims", "X-Auth-Role"]


def seen_headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in response.json()["headers"]]


def header_values(response: httpx.Response, name: str) -> list[str]:
    return [v for k, v in seen_headers(response) if k.replace("_", "-").lower() == name.lower()]


def spoof_variants(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for name in IDENTITY:
        for _ in range(3):
            variant = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)
            if rng.random() < 0.5:
                variant = variant.replace("-", "_")
            out.append((variant, "spoofed-" + str(rng.randrange(10**6))))
    return out


def test_valid_cookie_injects_identity(sidecar, token):
    r = httpx.get(sidecar["url"] + "/api/me", headers={"Cookie": f"authjs.session-token={token}"})
    assert r.status_code == 200
    assert header_values(r, "x-auth-sub") == ["user-1"]
    assert header_values(r, "x-auth-email") == ["ada@example.com"]
    assert header_values(r, "x-auth-picture") == []  # null claim: no header
    claims = json.loads(base64.urlsafe_b64decode(header_values(r, "x-auth-claims")[0] + "=="))
    assert claims["sub"] == "user-1" and "exp" in claims and "jti" in claims
    assert r.headers["x-request-id"] == header_values(r, "x-request-id")[0]


def test_bearer_token_and_percent_encoding(sidecar, token):
    r = httpx.get(sidecar["url"] + "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and header_values(r, "x-auth-sub") == ["user-1"]


@pytest.mark.parametrize("route,auth", [("/api/x", True), ("/public/x", True), ("/public/x", False), ("/docs", False)])
def test_spoofed_identity_headers_never_reach_upstream(sidecar, token, route, auth):
    rng = random.Random(route + str(auth))
    for _ in range(5):
        headers = spoof_variants(rng)
        if auth:
            headers.append(("Cookie", f"authjs.session-token={token}"))
        r = httpx.get(sidecar["url"] + route, headers=headers)
        assert r.status_code == 200
        for k, v in seen_headers(r):
            assert not v.startswith("spoofed-"), (k, v)
            assert not k.replace("_", "-").lower().startswith("x-auth-") or auth
        assert header_values(r, "x-auth-sub") == (["user-1"] if auth else [])


def test_spoofed_headers_raw_duplicates_and_underscores(sidecar, token):
    req = (b"GET /public/raw HTTP/1.1\r\nHost: x\r\nX-Auth-Sub: a\r\nx-auth-sub: b\r\nX_AUTH_SUB: c\r\nx_Auth_Email: d\r\n"
           b"X-AUTH-CLAIMS: e\r\nConnection: close\r\n\r\n")
    body = raw_exchange(sidecar["port"], req, until_close=True).split(b"\r\n\r\n", 1)[1]
    # chunked or not, the JSON is in there
    text = body.decode("latin-1")
    for v in ['"a"', '"b"', '"c"', '"d"', '"e"']:
        assert f'"x-auth-sub",{v}' not in text and v not in text.split('"headers"')[1].split("]]")[0].replace('"x-auth', '')


def test_missing_token_is_401_with_challenge(sidecar):
    r = httpx.get(sidecar["url"] + "/api/x")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="authjs-sidecar", error="invalid_token"')
    assert 'error_description="missing_token"' in r.headers["www-authenticate"]
    body = r.json()
    assert body == {"error": "invalid_token", "reason": "missing_token", "request_id": r.headers["x-request-id"]}


def test_expired_and_forged_tokens_are_401(sidecar):
    expired = mint('{"sub":"old"}', "--now", "1700000000")
    r = httpx.get(sidecar["url"] + "/api/x", headers={"Cookie": f"authjs.session-token={expired}"})
    assert r.status_code == 401 and r.json()["reason"] == "expired"
    forged = subprocess.run([binary(), "mint", "--secret", "another-secret", '{"sub":"evil"}'], capture_output=True, text=True).stdout.strip()
    r = httpx.get(sidecar["url"] + "/api/x", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["reason"] == "no_matching_key"
    assert forged not in r.text and forged[:40] not in sidecar["proc"].output()


@pytest.mark.parametrize("path,status", [("/docs", 200), ("/docs/", 200), ("/docs/a/b", 200), ("/docsx", 401),
                                         ("/docs/../admin", 401), ("/docs/%2e%2e/admin", 401), ("/docs/..;/admin", 401),
                                         ("/public/./x", 200), ("/%64ocs", 200), ("/docs%2fadmin", 400), ("/docs/%00", 400)])
def test_public_paths_are_normalised(sidecar, path, status):
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    resp = raw_exchange(sidecar["port"], req, until_close=True)
    assert resp.startswith(f"HTTP/1.1 {status}".encode()), resp[:200]


def test_forwarded_path_is_the_normalised_one(sidecar):
    req = b"GET /public/a/../b/./c;x=1?q=1%2F2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = raw_exchange(sidecar["port"], req, until_close=True)
    body = resp.split(b"\r\n\r\n", 1)[1]
    assert b'"path":"/public/b/c"' in body and b'"query":"q=1%2F2"' in body


def test_hop_by_hop_and_forwarding_headers(sidecar, token):
    r = httpx.get(sidecar["url"] + "/public/h", headers={
        "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil", "Forwarded": "for=6.6.6.6", "Proxy-Authorization": "x"})
    names = [k for k, _ in seen_headers(r)]
    for hop in ["x-secret-hop", "keep-alive", "te", "proxy-authorization", "forwarded"]:
        assert hop not in names
    assert header_values(r, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(r, "x-forwarded-proto") == ["http"]


def test_response_headers_listed_in_connection_are_dropped(sidecar, token):
    c = {"Cookie": f"authjs.session-token={token}", "X-Request-Id": "client-id"}
    r = httpx.get(sidecar["url"] + "/hop-response", headers=c)
    assert r.status_code == 200 and r.content == b"ok"
    assert "x-upstream-hop" not in r.headers and r.headers["x-kept"] == "1"
    assert r.headers.get_list("x-request-id") == ["upstream-id"]
    # Listing X-Request-Id makes the upstream's hop-by-hop: the sidecar's own (the client's here) takes its place.
    r = httpx.get(sidecar["url"] + "/hop-response?listed=X-Request-Id,%20x-upstream-hop", headers=c)
    assert r.status_code == 200
    assert "x-upstream-hop" not in r.headers and r.headers["x-kept"] == "1"
    assert r.headers.get_list("x-request-id") == ["client-id"]


def test_request_id_kept_or_generated(sidecar):
    r = httpx.get(sidecar["url"] + "/public/id", headers={"X-Request-Id": "abc-123_X.y"})
    assert r.headers["x-request-id"] == "abc-123_X.y" and header_values(r, "x-request-id") == ["abc-123_X.y"]
    r = httpx.get(sidecar["url"] + "/public/id", headers={"X-Request-Id": "bad id\t<script>"})
    generated = r.headers["x-request-id"]
    assert len(generated) == 32 and header_values(r, "x-request-id") == [generated]


def test_head_204_304(sidecar, token):
    c = {"Cookie": f"authjs.session-token={token}"}
    r = httpx.head(sidecar["url"] + "/fixed/1000", headers=c)
    assert r.status_code in (200, 405) and r.content == b""
    for code in (204, 304):
        r = httpx.get(sidecar["url"] + f"/status/{code}", headers=c)
        assert r.status_code == code and r.content == b""
    # the connection is still usable after bodiless responses
    with httpx.Client(headers=c) as client:
        for code in (204, 304, 200):
            assert client.get(sidecar["url"] + f"/status/{code}").status_code == code


def test_expect_100_continue(sidecar, token):
    with socket.create_connection(("127.0.0.1", sidecar["port"]), timeout=5) as s:
        s.sendall((f"POST /upload HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n"
                   "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n").encode())
        first = s.recv(1024)
        assert first.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        rest = b""
        while b'"body_bytes":5' not in rest:
            chunk = s.recv(4096)
            assert chunk
            rest += chunk


def test_expect_100_continue_denied_without_token(sidecar):
    with socket.create_connection(("127.0.0.1", sidecar["port"]), timeout=5) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 401")


def test_pipelined_requests_answered_in_order(sidecar, token):
    reqs = b"".join(f"GET /public/p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
    reqs += b"GET /api/denied HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = raw_exchange(sidecar["port"], reqs, until_close=True)
    order = [resp.find(f'"path":"/public/p{i}"'.encode()) for i in range(5)]
    assert all(o > 0 for o in order) and order == sorted(order)
    assert resp.rfind(b"HTTP/1.1 401") > order[-1]


@pytest.mark.parametrize("first", ["HEAD", "GET"])
def test_pipelined_upload_behind_another_request_reaches_the_upstream_whole(sidecar, token, first):
    """Found by the `forward` fuzz target: a POST pipelined behind another request was forwarded when that one's
    response ended, but its body was never flushed upstream — the upstream waited and the client got a 504."""
    c = f"Cookie: authjs.session-token={token}\r\n"
    reqs = (f"{first} /public/first HTTP/1.1\r\nHost: x\r\n{c}\r\n"
            f"POST /upload HTTP/1.1\r\nHost: x\r\n{c}Content-Length: 3\r\nConnection: close\r\n\r\nabc").encode()
    resp = raw_exchange(sidecar["port"], reqs, until_close=True)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", resp)
    assert statuses == [b"200", b"200"], resp[:600]
    assert b'"body_bytes":3' in resp, resp[-300:]


def test_upstream_connections_are_reused(sidecar, upstream, token):
    httpx.delete(upstream["url"] + "/connections")
    with httpx.Client(headers={"Cookie": f"authjs.session-token={token}"}) as client:
        for _ in range(50):
            assert client.get(sidecar["url"] + "/api/reuse").status_code == 200
    # one client connection sits on one event loop: its 50 requests reuse one upstream connection
    assert httpx.get(upstream["url"] + "/connections").json()["connections"] <= 2


def test_large_upload_streams_with_bounded_memory(sidecar, token):
    pid = sidecar["proc"].pid
    size = 100 * 1000 * 1000
    chunk = b"u" * (256 * 1024)

    def body():
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent)
            sent += n
            yield chunk[:n]

    before = rss_kib(pid)
    r = httpx.post(sidecar["url"] + "/upload", content=body(), headers={"Cookie": f"authjs.session-token={token}",
                                                                        "Content-Length": str(size)}, timeout=120)
    assert r.status_code == 200 and r.json()["body_bytes"] == size
    peak = rss_kib(pid, "VmHWM")
    assert peak - before < 48 * 1024, f"RSS grew from {before} KiB to peak {peak} KiB"


def test_large_download_streams_with_bounded_memory(sidecar, token):
    pid = sidecar["proc"].pid
    before = rss_kib(pid)
    for path in ("/fixed/100000000", "/stream/100000000"):
        total = 0
        with httpx.stream("GET", sidecar["url"] + path, headers={"Cookie": f"authjs.session-token={token}"}, timeout=120) as r:
            assert r.status_code == 200
            for part in r.iter_raw(1 << 20):
                total += len(part)
        assert total == 100_000_000
    peak = rss_kib(pid, "VmHWM")
    assert peak - before < 48 * 1024, f"RSS grew from {before} KiB to peak {peak} KiB"


def test_upstream_abort_mid_body_is_an_aborted_response(sidecar, token):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with httpx.stream("GET", sidecar["url"] + "/abort/100000", headers={"Cookie": f"authjs.session-token={token}"}, timeout=10) as r:
            for _ in r.iter_raw():
                pass
    assert httpx.get(sidecar["url"] + "/public/after-abort").status_code == 200


def test_upstream_that_never_answers_gives_504(sidecar, token):
    t0 = time.monotonic()
    r = httpx.get(sidecar["url"] + "/slow/10", headers={"Cookie": f"authjs.session-token={token}"}, timeout=10)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504 and r.json()["reason"] == "upstream_timeout"
    assert 1.5 < elapsed < 4
    assert httpx.get(sidecar["url"] + "/public/after-timeout").status_code == 200


def test_upstream_down_502_fast_then_recovers(token):
    upstream_proc, port = start_upstream()
    proc, sport = start_sidecar(f"http://127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{sport}"
        # One warm keep-alive client, so the measured time is the sidecar's answer, not client set-up.
        client = httpx.Client()
        assert client.get(url + "/public/warm").status_code == 200
        fds_before = fd_count(proc.pid)
        upstream_proc.stop()
        t0 = time.monotonic()
        r = client.get(url + "/public/down")
        elapsed = time.monotonic() - t0
        client.close()
        assert r.status_code == 502 and r.json()["error"] == "bad_gateway"
        assert elapsed < 0.1, f"502 took {elapsed * 1000:.1f} ms (target < 100 ms)"
        assert httpx.get(url + "/_sidecar/readyz").status_code == 503
        upstream_proc, _ = start_upstream(port)
        assert httpx.get(url + "/public/back").status_code == 200
        assert httpx.get(url + "/_sidecar/readyz").status_code == 200
        time.sleep(0.2)
        assert fd_count(proc.pid) <= fds_before + 2
    finally:
        proc.stop()
        upstream_proc.stop()


def test_upstream_garbage_is_502(token):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]

    def serve():
        # Answers garbage on each connection the sidecar opens (its readiness probe's, then maybe a fresh one); the
        # accept that waits when the test ends fails on the closed socket, which is the thread's normal end.
        for _ in range(2):
            try:
                conn, _ = srv.accept()
                conn.recv(65536)
                conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                conn.close()
            except OSError:
                return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    proc, sport = start_sidecar(f"http://127.0.0.1:{port}")
    try:
        r = httpx.get(f"http://127.0.0.1:{sport}/public/x")
        assert r.status_code == 502
    finally:
        proc.stop()
        srv.close()


def test_body_and_header_limits():
    proc, port = start_sidecar("echo", {"SIDECAR_MAX_BODY_BYTES": "1000", "SIDECAR_MAX_HEADER_BYTES": "4096"})
    try:
        url = f"http://127.0.0.1:{port}"
        r = httpx.post(url + "/public/x", content=b"x" * 2000)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        # chunked: counted while streaming
        r = httpx.post(url + "/public/x", content=iter([b"x" * 600, b"x" * 600]))
        assert r.status_code == 413
        r = httpx.get(url + "/public/x", headers={"X-Big": "a" * 5000})
        assert r.status_code == 431
        assert httpx.post(url + "/public/x", content=b"x" * 900).json()["body_bytes"] == 900
    finally:
        proc.stop()


def test_swift_echo_upstream_demo(token):
    proc, port = start_sidecar("echo")
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/anything?x=1", headers={"Cookie": f"authjs.session-token={token}", "X-Auth-Sub": "evil"})
        body = r.json()
        assert body["method"] == "GET" and body["path"] == "/anything?x=1"
        subs = [v for k, v in body["headers"] if k == "x-auth-sub"]
        assert subs == ["user-1"]
    finally:
        proc.stop()


def test_non_ascii_claims_are_encoded_losslessly(sidecar):
    tok = mint(json.dumps({"sub": "u\r\nInjected: yes", "name": "Zoë 🎉", "email": "utf-8''x"}))
    r = httpx.get(sidecar["url"] + "/api/x", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200
    sub = header_values(r, "x-auth-sub")[0]
    assert sub == "utf-8''u%0D%0AInjected%3A%20yes"
    assert "injected" not in [k for k, _ in seen_headers(r)]
    from urllib.parse import unquote
    assert unquote(header_values(r, "x-auth-name")[0][len("utf-8''"):]) == "Zoë 🎉"
    assert header_values(r, "x-auth-email")[0] == "utf-8''utf-8%27%27x"


def test_sigterm_drains_in_flight_requests(token):
    upstream_proc, uport = start_upstream()
    proc, port = start_sidecar(f"http://127.0.0.1:{uport}", {"SIDECAR_SHUTDOWN_TIMEOUT": "10"})
    results = []

    def slow_request():
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/slow/1.5", headers={"Cookie": f"authjs.session-token={token}"}, timeout=10)
            results.append(r.status_code)
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    try:
        threads = [threading.Thread(target=slow_request) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/public/new", timeout=2)
        for t in threads:
            t.join(10)
        assert results == [200, 200, 200, 200]
        proc.p.wait(10)
        assert proc.p.returncode == 0
        assert time.monotonic() - t0 < 10
    finally:
        proc.stop()
        upstream_proc.stop()


def test_check_config_reports_every_problem():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "AUTH_SECRET", "NEXTAUTH"))}
    env.update({"SIDECAR_LISTEN": "nope", "SIDECAR_UPSTREAM": "ftp://x", "SIDECAR_CLOCK_TOLERANCE": "-1"})
    r = subprocess.run([binary(), "check-config", "--threads", "0"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    for key in ["SIDECAR_LISTEN", "SIDECAR_UPSTREAM", "SIDECAR_CLOCK_TOLERANCE", "--threads", "AUTH_SECRET"]:
        assert key in r.stderr, (key, r.stderr)
    env["AUTH_SECRET"] = "super-secret-value-xyz"
    r = subprocess.run([binary(), "check-config", "--listen", "127.0.0.1:0"], env={**env, "SIDECAR_LISTEN": "127.0.0.1:1", "SIDECAR_UPSTREAM": "echo", "SIDECAR_CLOCK_TOLERANCE": "15"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "super-secret-value-xyz" not in r.stdout + r.stderr


def test_secrets_never_logged(sidecar):
    assert SECRET not in sidecar["proc"].output()
