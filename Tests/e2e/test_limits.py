"""Connection limits against the live sidecar: header read timeout (slowloris), idle keep-alive timeout, the
max-connections limit, no fd leaks, and clear JSON 431/413 answers."""
from __future__ import annotations

import json
import resource
import selectors
import socket
import threading
import time

import httpx
import pytest

from conftest import fd_count, mint, start_sidecar

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SEND_TIMEOUT = 2.0
SLACK = 1.5  # scheduling slack on a busy 2-core CI box


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def raise_fd_limit(want: int = 8192) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(max(want, soft), hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(want, hard)


def wait_fds(pid: int, at_most: int, timeout: float = 5.0) -> int:
    """Polls the sidecar's fd count until it is at most `at_most`; returns the last count."""
    deadline = time.monotonic() + timeout
    n = fd_count(pid)
    while n > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def assert_no_fd_leak(pid: int, before: int, slack: int = 2, timeout: float = 5.0) -> None:
    # slack: the per-loop upstream keep-alive pool may hold a connection more (or fewer) than before
    n = wait_fds(pid, before + slack, timeout)
    assert n <= before + slack, f"fd leak: {before} fds before, {n} after"


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_until_close(s: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """Reads until EOF/RST; returns (bytes, monotonic time of the close) or (bytes, None) on timeout."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, None
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return buf, None
        except (ConnectionResetError, BrokenPipeError):
            return buf, time.monotonic()
        if not d:
            return buf, time.monotonic()
        buf += d


def read_response(s: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One content-length framed response (all the sidecar's own answers, and the echo's)."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError(f"closed before a response: {buf!r}")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed mid-body")
        rest += d
    return status, headers, rest[:n]


def dribble_until_closed(s: socket.socket, data: bytes, interval: float, limit: float) -> tuple[float | None, bytes, int]:
    """Sends `data` one byte every `interval` s; returns (seconds until the peer closed or None, what it sent, bytes sent)."""
    t0 = time.monotonic()
    received = b""
    sent = 0
    s.setblocking(False)
    try:
        while time.monotonic() - t0 < limit:
            try:
                d = s.recv(65536)
                if not d:
                    return time.monotonic() - t0, received, sent
                received += d
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - t0, received, sent
            if sent < len(data) and time.monotonic() - t0 >= sent * interval:
                try:
                    s.send(data[sent:sent + 1])
                    sent += 1
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0, received, sent
            time.sleep(0.02)
        return None, received, sent
    finally:
        s.setblocking(True)


@pytest.fixture(scope="module")
def limited(upstream):
    proc, port = start_sidecar(upstream["url"], {
        "SIDECAR_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "SIDECAR_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
        "SIDECAR_CLIENT_BODY_TIMEOUT": str(BODY_TIMEOUT), "SIDECAR_CLIENT_SEND_TIMEOUT": str(SEND_TIMEOUT),
        "SIDECAR_UPSTREAM_TIMEOUT": "10", "SIDECAR_MAX_BODY_BYTES": "1000", "SIDECAR_MAX_HEADER_BYTES": "4096"})
    # warm the upstream pools so fd counts are stable
    with httpx.Client() as c:
        for _ in range(4):
            c.get(f"http://127.0.0.1:{port}/public/warm")
    yield {"proc": proc, "port": port, "url": f"http://127.0.0.1:{port}", "pid": proc.pid}
    proc.stop()


# ---------------------------------------------------------------------------------------------------------------
# header read timeout and idle keep-alive
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["fresh", "after-a-request", "request-line"])
def test_header_dribbler_closed_after_header_timeout(limited, when):
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    s = connect(port)
    try:
        if when == "after-a-request":
            s.sendall(b"GET /public/first HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = read_response(s)
            assert status == 200
        if when == "request-line":
            head, tail = b"", b"GET /public/slow HTTP/1.1\r\nHost: x\r\n" + b"X-Dribble: " + b"a" * 60
        else:
            head, tail = b"GET /public/slow HTTP/1.1\r\nHost: x\r\n", b"X-Dribble: " + b"a" * 60
        if head:
            s.sendall(head)
        # one byte every second: each byte resets a plain read-idle timer, only a header deadline stops it
        closed_after, received, sent = dribble_until_closed(s, tail, 1.0, HEADER_TIMEOUT + 8)
    finally:
        s.close()
    assert closed_after is not None, f"connection still open {HEADER_TIMEOUT + 8} s into a dribbled header block ({sent} bytes dribbled)"
    assert HEADER_TIMEOUT - 0.5 <= closed_after <= HEADER_TIMEOUT + SLACK, \
        f"closed {closed_after:.2f} s after the header block started, want ~{HEADER_TIMEOUT} s (SIDECAR_HEADER_TIMEOUT)"
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), f"unexpected answer to a dribbled header: {received[:300]!r}"
    assert_no_fd_leak(pid, before)


def test_idle_keepalive_connection_closed_after_idle_timeout(limited):
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    with connect(port) as s:
        s.sendall(b"GET /public/idle HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_response(s)
        t_resp = time.monotonic()
        assert status == 200 and headers.get("connection", "").lower() != "close"
        rest, t_closed = recv_until_close(s, IDLE_TIMEOUT + 6)
    assert t_closed is not None, f"idle keep-alive connection still open {IDLE_TIMEOUT + 6} s after its response"
    idle_for = t_closed - t_resp
    assert IDLE_TIMEOUT - 0.5 <= idle_for <= IDLE_TIMEOUT + SLACK, f"closed after {idle_for:.2f} s idle, want ~{IDLE_TIMEOUT} s"
    assert rest == b"", rest
    assert_no_fd_leak(pid, before)


def test_silent_connection_closed(limited):
    """A connection that never sends a byte is closed by the idle (or header) timeout, whichever is first."""
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    with connect(port) as s:
        t0 = time.monotonic()
        rest, t_closed = recv_until_close(s, max(IDLE_TIMEOUT, HEADER_TIMEOUT) + 6)
    assert t_closed is not None, "silent connection never closed"
    assert t_closed - t0 <= max(IDLE_TIMEOUT, HEADER_TIMEOUT) + SLACK, f"closed after {t_closed - t0:.2f} s"
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408"), rest
    assert_no_fd_leak(pid, before)


def test_timeouts_do_not_cut_a_slow_upstream_response(limited):
    """The client is silent while the upstream thinks: neither the idle nor the header timeout applies."""
    before = fd_count(limited["pid"])
    token = mint()
    t0 = time.monotonic()
    r = httpx.get(limited["url"] + f"/slow/{IDLE_TIMEOUT + 1.5}", headers={"Cookie": f"authjs.session-token={token}"}, timeout=15)
    assert r.status_code == 200 and r.json()["slept"] == IDLE_TIMEOUT + 1.5
    assert time.monotonic() - t0 >= IDLE_TIMEOUT + 1.5
    assert_no_fd_leak(limited["pid"], before)


def test_header_timeout_does_not_cut_a_slow_body(limited):
    """The header block is complete: a body dribbled over more than SIDECAR_HEADER_TIMEOUT (each gap shorter than
    the idle timeout) is streamed, not cut."""
    before = fd_count(limited["pid"])
    token = mint()
    body = b"0123456789"
    with connect(limited["port"], timeout=15) as s:
        s.sendall((f"POST /upload HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode())
        t0 = time.monotonic()
        for i, b in enumerate(body):
            s.sendall(bytes([b]))
            time.sleep(0.45)
        assert time.monotonic() - t0 > HEADER_TIMEOUT + 1
        status, _, resp = read_response(s, timeout=10)
    assert status == 200 and json.loads(resp)["body_bytes"] == len(body), resp
    assert_no_fd_leak(limited["pid"], before)


# ---------------------------------------------------------------------------------------------------------------
# request body deadlines: the client's pauses (client_body_timeout), and the upstream's wait counted from the last
# request bytes it was sent (upstream_timeout)
# ---------------------------------------------------------------------------------------------------------------

def test_stalled_body_gets_408_and_the_upstream_connection_is_released(limited):
    """A client stops halfway through the body of a forwarded request: 408 after SIDECAR_CLIENT_BODY_TIMEOUT (not
    the upstream's 504 after SIDECAR_UPSTREAM_TIMEOUT), the connection closes, and the upstream connection that
    holds half a request is closed, not pooled."""
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    token = mint()
    with connect(port, timeout=15) as s:
        s.sendall((f"POST /upload HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n"
                   f"Content-Length: 500\r\n\r\n").encode() + b"x" * 100)
        t0 = time.monotonic()
        status, headers, body = read_response(s, timeout=BODY_TIMEOUT + 8)
        answered = time.monotonic() - t0
        rest, t_closed = recv_until_close(s, 3)
    assert_clear_json_error(status, headers, body, 408, "request_timeout", "client_body_timeout")
    assert BODY_TIMEOUT - 0.5 <= answered <= BODY_TIMEOUT + SLACK, f"408 after {answered:.2f} s, want ~{BODY_TIMEOUT} s"
    assert headers.get("connection", "").lower() == "close" and t_closed is not None and rest == b""
    assert_no_fd_leak(pid, before)


def test_stalled_body_after_a_401_closes_the_connection(limited):
    """The sidecar answered from the head (no token) and drains the body to keep the connection: a client that stops
    sending it no longer holds the connection for ever."""
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    with connect(port, timeout=15) as s:
        s.sendall(b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"x" * 100)
        status, _, _ = read_response(s)
        t0 = time.monotonic()
        rest, t_closed = recv_until_close(s, BODY_TIMEOUT + 8)
    assert status == 401
    assert t_closed is not None, f"connection still open {BODY_TIMEOUT + 8} s into a stalled body"
    assert t_closed - t0 <= BODY_TIMEOUT + SLACK, f"closed {t_closed - t0:.2f} s after the 401"
    assert rest == b"", rest
    assert_no_fd_leak(pid, before)


def test_upload_longer_than_the_upstream_timeout_is_not_cut(sidecar, token):
    """SIDECAR_UPSTREAM_TIMEOUT is 2 s on this sidecar: a body sent over ~3.5 s (a slow client; each pause far under
    the body timeout) reaches the upstream whole and is answered — it used to be a 504 at 2 s."""
    body = b"u" * 8
    with connect(sidecar["port"], timeout=15) as s:
        s.sendall((f"POST /upload HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode())
        t0 = time.monotonic()
        for b in body:
            time.sleep(0.45)
            s.sendall(bytes([b]))
        assert time.monotonic() - t0 > 3.5
        status, _, resp = read_response(s, timeout=10)
    assert status == 200, (status, resp[:300])
    assert json.loads(resp)["body_bytes"] == len(body), resp


def test_upstream_that_stops_mid_response_is_cut(sidecar, token):
    """SIDECAR_UPSTREAM_TIMEOUT is 2 s on this sidecar: an upstream that sends half its body and then nothing is cut
    ~2 s after its last byte — the client sees an aborted response (never a short one passed off as whole) instead
    of waiting for ever."""
    pid = sidecar["proc"].pid
    before = fd_count(pid)
    with connect(sidecar["port"], timeout=15) as s:
        s.sendall(f"GET /stall/1000 HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf or len(buf.partition(b"\r\n\r\n")[2]) < 1000:
            d = s.recv(65536)
            assert d, f"closed before the first half: {buf[:200]!r}"
            buf += d
        t_half = time.monotonic()
        rest, t_closed = recv_until_close(s, 8)
    assert buf.startswith(b"HTTP/1.1 200") and b"content-length: 2000" in buf.lower()
    assert t_closed is not None, "still open 8 s after the upstream stopped"
    assert 2.0 - 0.5 <= t_closed - t_half <= 2.0 + SLACK, f"cut {t_closed - t_half:.2f} s after the last byte, want ~2 s"
    assert len(buf.partition(b"\r\n\r\n")[2]) + len(rest) == 1000, "the client got exactly what the upstream sent"
    assert_no_fd_leak(pid, before)


def test_client_that_reads_nothing_is_cut_after_the_send_timeout(limited):
    """A client asks for 100 MB and reads none of it: once the socket buffers are full, the sidecar stops reading the
    upstream and, SIDECAR_CLIENT_SEND_TIMEOUT later, closes both connections (both were held for ever)."""
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    token = mint()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    try:
        s.sendall(f"GET /fixed/100000000 HTTP/1.1\r\nHost: x\r\nCookie: authjs.session-token={token}\r\n\r\n".encode())
        time.sleep(SEND_TIMEOUT + SLACK + 2)  # the buffers fill within a fraction of a second, then the deadline runs
        received, t_closed = 0, None
        s.settimeout(5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                d = s.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                t_closed = time.monotonic()
                break
            if not d:
                t_closed = time.monotonic()
                break
            received += len(d)
    finally:
        s.close()
    assert t_closed is not None, f"still sending after 20 s of reading ({received} bytes)"
    assert received < 50_000_000, f"{received} bytes: the connection was not cut while the client read nothing"
    assert_no_fd_leak(pid, before)


# ---------------------------------------------------------------------------------------------------------------
# 1000 dribblers
# ---------------------------------------------------------------------------------------------------------------

def test_thousand_header_dribblers_do_not_stop_normal_clients(upstream):
    n_dribblers = 1000
    header_timeout = 6.0
    raise_fd_limit(n_dribblers * 2 + 4096)
    proc, port = start_sidecar(upstream["url"], {"SIDECAR_HEADER_TIMEOUT": str(header_timeout), "SIDECAR_IDLE_TIMEOUT": "30",
                                                 "SIDECAR_MAX_CONNECTIONS": "10000", "SIDECAR_THREADS": "2"})
    url = f"http://127.0.0.1:{port}"
    socks: list[socket.socket] = []
    stop = threading.Event()
    try:
        with httpx.Client() as c:
            for _ in range(4):
                assert c.get(url + "/public/warm").status_code == 200
        before = fd_count(proc.pid)
        t_open = time.monotonic()
        for i in range(n_dribblers):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(f"GET /public/dribble-{i} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
            socks.append(s)
        opened_in = time.monotonic() - t_open

        def dribble():
            while not stop.wait(1.0):
                for s in socks:
                    try:
                        s.send(b"a", socket.MSG_DONTWAIT)
                    except OSError:
                        pass

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        # The kernel completes each handshake into the listen backlog; the sidecar accepts them on its own time (on a
        # busy box the last ones ~1 s later). Wait for that, well inside the header timeout.
        wait_until = time.monotonic() + 2.0
        while True:
            time.sleep(0.1)
            held = fd_count(proc.pid) - before
            if held >= n_dribblers * 0.95 or time.monotonic() > wait_until:
                break

        latencies = []
        for i in range(10):
            t0 = time.monotonic()
            r = httpx.get(url + f"/public/normal-{i}", timeout=5)  # a new connection every time
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200 and r.json()["path"] == f"/public/normal-{i}"
        with httpx.Client() as c:  # and a keep-alive one
            for i in range(10):
                t0 = time.monotonic()
                assert c.get(url + f"/public/normal-ka-{i}", timeout=5).status_code == 200
                latencies.append(time.monotonic() - t0)
        measured_at = time.monotonic() - t_open

        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        closed_early = len(sel.select(timeout=0))
        print(f"\n{n_dribblers} dribblers opened in {opened_in:.2f} s, sidecar holds +{held} fds, {closed_early} closed at "
              f"{measured_at:.1f} s; normal latencies max {max(latencies) * 1000:.1f} ms, "
              f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms")
        assert held >= n_dribblers * 0.95, f"only {held} of {n_dribblers} dribbler connections were held by the sidecar"
        assert closed_early <= n_dribblers * 0.05, f"{closed_early} dribblers already closed at {measured_at:.1f} s: not measured while open"
        assert max(latencies) < 1.0, f"normal request latencies with {n_dribblers} dribblers open: max {max(latencies):.3f} s " \
                                     f"(all: {[round(x, 3) for x in latencies]}); dribblers opened in {opened_in:.2f} s"

        # and the header timeout then closes every dribbler
        deadline = t_open + opened_in + header_timeout + 4
        open_socks = set(socks)
        while open_socks and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                if key.fileobj in open_socks:
                    try:
                        d = key.fileobj.recv(4096, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    except OSError:
                        d = b""
                    if not d or d.startswith(b"HTTP/1.1 408"):
                        open_socks.discard(key.fileobj)
                        sel.unregister(key.fileobj)
        assert not open_socks, f"{len(open_socks)} dribblers still open {header_timeout + 4:.0f} s after they started"
        stop.set()
        for s in socks:
            s.close()
        socks.clear()
        assert httpx.get(url + "/public/after", timeout=5).status_code == 200
        assert_no_fd_leak(proc.pid, before, slack=3, timeout=8)
    finally:
        stop.set()
        for s in socks:
            s.close()
        proc.stop()


# ---------------------------------------------------------------------------------------------------------------
# max connections
# ---------------------------------------------------------------------------------------------------------------

def over_limit_outcome(port: int) -> str:
    """What a connection beyond the limit gets: 'refused', 'closed' (EOF/RST, no response), '503', or a failure text."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
    except (ConnectionRefusedError, ConnectionResetError):
        return "refused"
    with s:
        try:
            s.sendall(b"GET /public/over HTTP/1.1\r\nHost: x\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return "closed"
        data, t_closed = recv_until_close(s, 3)
    if not data:
        return "closed" if t_closed is not None else "hung: no response and not closed within 3 s"
    if not data.startswith(b"HTTP/1.1 503"):
        return f"served: {data[:200]!r}"
    head, _, body = data.partition(b"\r\n\r\n")
    lower = head.decode("latin-1").lower()
    if "application/json" not in lower:
        return f"503 without a JSON content-type: {data[:300]!r}"
    try:
        j = json.loads(body)
    except ValueError:
        return f"503 body is not JSON: {body[:200]!r}"
    if "error" not in j:
        return f"503 JSON without an error code: {j}"
    if t_closed is None:
        return "503 but the connection stayed open"
    return "503"


def test_max_connections(upstream):
    limit = 20
    proc, port = start_sidecar(upstream["url"], {"SIDECAR_MAX_CONNECTIONS": str(limit), "SIDECAR_IDLE_TIMEOUT": "60",
                                                 "SIDECAR_HEADER_TIMEOUT": "30"})
    held: list[socket.socket] = []
    try:
        with httpx.Client() as c:
            assert c.get(f"http://127.0.0.1:{port}/public/warm").status_code == 200
        time.sleep(0.2)
        before = fd_count(proc.pid)
        for i in range(limit):
            s = connect(port)
            s.sendall(f"GET /public/held-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, _ = read_response(s)
            assert status == 200, f"connection {i + 1} of {limit} was not served"
            held.append(s)
        for _ in range(5):
            outcome = over_limit_outcome(port)
            assert outcome in ("refused", "closed", "503"), f"connection {limit + 1} (limit {limit}): {outcome}"
        print(f"\nover the limit of {limit}: {outcome}")
        # a burst over the limit does not disturb the admitted ones
        burst = [over_limit_outcome(port) for _ in range(50)]
        assert all(o in ("refused", "closed", "503") for o in burst), burst
        for i, s in enumerate(held):
            s.sendall(f"GET /public/still-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(s)[0] == 200
        # closing admitted connections frees their slots
        for s in held[:5]:
            s.close()
        del held[:5]
        deadline = time.monotonic() + 3
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/public/after-release", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no slot was freed after 5 admitted connections closed"
            time.sleep(0.1)
        for s in held:
            s.close()
        held.clear()
        # health stays reachable once connections are released
        assert httpx.get(f"http://127.0.0.1:{port}/_sidecar/healthz", timeout=2).status_code == 200
        assert_no_fd_leak(proc.pid, before, slack=2)
    finally:
        for s in held:
            s.close()
        proc.stop()


# ---------------------------------------------------------------------------------------------------------------
# 431 / 413: clear JSON
# ---------------------------------------------------------------------------------------------------------------

def assert_clear_json_error(status: int, headers: dict[str, str], body: bytes, want_status: int, want_error: str, limit_text: str) -> None:
    assert status == want_status, (status, headers, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert int(headers.get("content-length", "-1")) == len(body), headers
    j = json.loads(body)
    assert j["error"] == want_error, j
    assert limit_text in j["reason"], f"reason should name the limit ({limit_text}): {j}"
    assert j["request_id"] == headers.get("x-request-id") and j["request_id"], (j, headers)
    assert headers.get("cache-control") == "no-store", headers


@pytest.mark.parametrize("kind", ["one-big-header", "many-headers", "long-target", "big-cookie"])
def test_431_is_clear_json(limited, kind):
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    if kind == "one-big-header":
        req = b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    elif kind == "many-headers":
        req = b"GET /public/x HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 30) for i in range(200)) + b"\r\n"
    elif kind == "long-target":
        req = b"GET /public/" + b"p" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        req = b"GET /public/x HTTP/1.1\r\nHost: x\r\nCookie: a=" + b"c" * 5000 + b"\r\n\r\n"
    with connect(port) as s:
        s.sendall(req)
        status, headers, body = read_response(s)
        _, t_closed = recv_until_close(s, 2)
    assert_clear_json_error(status, headers, body, 431, "request_header_fields_too_large", "4096")
    assert headers.get("connection", "").lower() == "close" and t_closed is not None, "431 must close the connection"
    assert_no_fd_leak(pid, before)


def test_431_beyond_the_decoder_limit_is_clear_json(upstream):
    """A header block larger than SwiftNIO's own parser limit (80 KiB per field) still gets the sidecar's JSON 431,
    not the parser's bare 400."""
    proc, port = start_sidecar(upstream["url"])  # default SIDECAR_MAX_HEADER_BYTES (64 KiB)
    try:
        for size in (70 * 1024, 100 * 1024, 300 * 1024):
            with connect(port) as s:
                try:
                    s.sendall(b"GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                status, headers, body = read_response(s)
            try:
                assert_clear_json_error(status, headers, body, 431, "request_header_fields_too_large", "65536")
            except AssertionError as e:
                raise AssertionError(f"{size // 1024} KiB X-Big header: got {status} {headers} {body[:200]!r}") from e
    finally:
        proc.stop()


@pytest.mark.parametrize("kind", ["declared", "declared-expect-100", "chunked-streamed", "cl-streamed-lie"])
def test_413_is_clear_json(limited, kind):
    pid, port = limited["pid"], limited["port"]
    before = fd_count(pid)
    with connect(port) as s:
        if kind == "declared":
            # the declared length alone is over the limit: answered before any body byte is sent
            s.sendall(b"POST /public/up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        elif kind == "declared-expect-100":
            s.sendall(b"POST /public/up HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n")
        elif kind == "chunked-streamed":
            s.sendall(b"POST /public/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                s.sendall(b"258\r\n" + b"x" * 600 + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        else:
            s.sendall(b"POST /public/up HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n" + b"x" * 999)
        status, headers, body = read_response(s)
        _, t_closed = recv_until_close(s, 2)
    if kind == "cl-streamed-lie":
        assert status == 200, "999 bytes is within the 1000-byte limit"
        return
    assert_clear_json_error(status, headers, body, 413, "payload_too_large", "1000")
    assert headers.get("connection", "").lower() == "close" and t_closed is not None, "413 must close the connection"
    assert_no_fd_leak(pid, before)
