"""The keep-alive upstream pool against the live sidecar: the idle cap (`SIDECAR_UPSTREAM_MAX_IDLE`) keeps high
concurrency from churning upstream connections, and a pooled connection that the upstream closes just as it is
reused is retried once for idempotent bodiless requests (never for a request with a body)."""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from conftest import free_port, start_sidecar


def metric(port: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def waves(base: str, token: str, clients: int, rounds: int) -> list[int]:
    """`rounds` waves of `clients` concurrent requests over `clients` keep-alive connections; each request waits
    0.2 s in the upstream, so a whole wave is in flight together and all its upstream connections come back at once."""
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def one() -> None:
            r = await client.get(base + "/slow/0.2", headers={"Authorization": f"Bearer {token}"})
            statuses.append(r.status_code)
        for _ in range(rounds):
            await asyncio.gather(*(one() for _ in range(clients)))
    return statuses


@pytest.mark.parametrize("max_idle, bounded", [(None, True), ("4", False)])
def test_idle_cap_decides_whether_concurrency_churns_connections(upstream, token, max_idle, bounded):
    mport = free_port()
    env = {"SIDECAR_METRICS_LISTEN": f"127.0.0.1:{mport}", "SIDECAR_THREADS": "1", "SIDECAR_ACCESS_LOG": "false"}
    if max_idle:
        env["SIDECAR_UPSTREAM_MAX_IDLE"] = max_idle
    sidecar, port = start_sidecar(upstream["url"], env)
    try:
        clients, rounds = 64, 5
        statuses = asyncio.run(waves(f"http://127.0.0.1:{port}", token, clients, rounds))
        assert statuses.count(200) == clients * rounds
        opened = metric(mport, "authjs_sidecar_upstream_connections_opened_total")
        if bounded:
            # At most one upstream connection per concurrent request (plus the start-up readiness probe).
            assert opened <= clients + 2, opened
        else:
            # With room for 4 idle connections, every wave after the first opens up to 60 new ones.
            assert opened > clients * 2, opened
        assert metric(mport, "authjs_sidecar_upstream_pool_idle") <= (int(max_idle) if max_idle else clients)
    finally:
        sidecar.stop()


class ClosingUpstream:
    """HTTP/1.1 upstream on raw sockets: answers the first request of every connection, and reads the second
    one and closes without a word — what a keep-alive timeout racing a reused connection looks like."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[int, str]] = []  # (connection number, request line)
        self.connections = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn, self.connections), daemon=True).start()

    @staticmethod
    def read_request(conn: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None, buf
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None, rest
            rest += chunk
        return head, rest[length:]

    def handle(self, conn: socket.socket, number: int) -> None:
        buf = b""
        with conn:
            for index in range(2):
                head, buf = self.read_request(conn, buf)
                if head is None:
                    return
                self.seen.append((number, head.split(b"\r\n")[0].decode()))
                if index == 1:
                    return  # close without answering
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


def test_reused_connection_closed_by_the_upstream_is_retried_only_when_safe(token):
    upstream = ClosingUpstream()
    mport = free_port()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}",
                                  {"SIDECAR_THREADS": "1", "SIDECAR_METRICS_LISTEN": f"127.0.0.1:{mport}"})
    try:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=10) as client:
            upstream.seen.clear()
            first = client.get("/api/one")
            assert first.status_code == 200 and first.text == "ok"
            # The pooled connection is reused, the upstream closes it unanswered: sent again on a new connection.
            second = client.get("/api/two")
            assert second.status_code == 200 and second.text == "ok"
            two = [n for n, line in upstream.seen if line.startswith("GET /api/two ")]
            assert len(two) == 2 and two[0] != two[1], upstream.seen
            # A request with a body is never sent twice: the client gets the 502.
            post = client.post("/api/three", content=b"payload")
            assert post.status_code == 502 and post.json()["reason"] == "upstream_closed"
            assert [line for _, line in upstream.seen].count("POST /api/three HTTP/1.1") == 1
        assert metric(mport, "authjs_sidecar_upstream_retries_total") == 1
    finally:
        sidecar.stop()
        upstream.close()


def test_a_connection_idle_past_the_idle_timeout_is_closed_not_reused(token):
    """The race above for a POST, avoided by the idle timeout: a pooled connection idle longer than
    `SIDECAR_UPSTREAM_IDLE_TIMEOUT` is closed by the sweep (and would never be taken), so a POST after a pause goes on
    a fresh connection. Right after a request the connection is still reused — and the upstream that drops it costs
    that POST its 502, which is what the timeout spares when it is set below the upstream's keep-alive timeout."""
    upstream = ClosingUpstream()
    mport = free_port()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}",
                                  {"SIDECAR_THREADS": "1", "SIDECAR_METRICS_LISTEN": f"127.0.0.1:{mport}",
                                   "SIDECAR_UPSTREAM_IDLE_TIMEOUT": "0.4"})
    try:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=10) as client:
            time.sleep(0.8)  # whatever start-up left in the pool expires
            upstream.seen.clear()
            assert client.post("/api/a", content=b"1").status_code == 200
            assert metric(mport, "authjs_sidecar_upstream_pool_idle") == 1
            time.sleep(0.8)
            assert metric(mport, "authjs_sidecar_upstream_pool_idle") == 0, "the sweep closed the idle connection"
            assert client.post("/api/b", content=b"2").status_code == 200, "a fresh connection, not the expired one"
            third = client.post("/api/c", content=b"3")  # at once: the pooled connection is reused, and dropped
            assert third.status_code == 502 and third.json()["reason"] == "upstream_closed"
            seen = {line.split()[1]: n for n, line in upstream.seen}
            assert seen["/api/a"] != seen["/api/b"] == seen["/api/c"], upstream.seen
    finally:
        sidecar.stop()
        upstream.close()


class ScriptedUpstream(ClosingUpstream):
    """Keeps every connection open and answers each request with `answer(request line)` (raw response bytes)."""

    def __init__(self, answer) -> None:
        self.answer = answer
        super().__init__()

    def handle(self, conn: socket.socket, number: int) -> None:
        buf = b""
        with conn:
            while True:
                head, buf = self.read_request(conn, buf)
                if head is None:
                    return
                line = head.split(b"\r\n")[0].decode()
                self.seen.append((number, line))
                conn.sendall(self.answer(line))


def head_chunked_upstream() -> ScriptedUpstream:
    """Answers HEAD the way a streaming endpoint does — `Transfer-Encoding: chunked` and, correctly, no body — and
    every other request with a 5-byte body."""
    return ScriptedUpstream(lambda line: b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                            if line.startswith("HEAD ") else b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")


def test_head_answered_chunked_is_relayed_without_a_body(token):
    """A chunked answer to HEAD has no body and no terminator: relaying one (`0\\r\\n\\r\\n`) would be read by the
    client as the start of the next response on the connection."""
    upstream = head_chunked_upstream()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}", {"SIDECAR_THREADS": "1"})
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            auth = f"Authorization: Bearer {token}\r\n".encode()
            # Pipelined on one connection: HEAD, then GET; then HEAD and GET again one at a time.
            s.sendall(b"HEAD /a HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\nGET /b HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            data = b""
            while data.count(b"hello") < 1:
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
            head_answer, _, rest = data.partition(b"\r\n\r\n")
            assert head_answer.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in head_answer.lower()
            # The next bytes are the GET's response — not a chunked terminator.
            assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:40]
            assert rest.endswith(b"\r\n\r\nhello")
            s.sendall(b"HEAD /c HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            s.sendall(b"GET /d HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            while not data.endswith(b"hello"):
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
            first, _, second = data.partition(b"\r\n\r\n")
            assert second.startswith(b"HTTP/1.1 200 OK\r\n"), second[:40]
        assert [line.split()[0] for _, line in upstream.seen] == ["HEAD", "GET", "HEAD", "GET"], upstream.seen
    finally:
        sidecar.stop()
        upstream.close()


def chunked_upstream() -> ScriptedUpstream:
    """Answers `/chunked` with a chunked body and anything else with `Content-Length`."""
    return ScriptedUpstream(lambda line: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                            if " /chunked " in line else b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world")


def read_until(s: socket.socket, suffix: bytes) -> bytes:
    data = b""
    while not data.endswith(suffix):
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    return data


def read_until_close(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("keep_alive", [False, True])
def test_http10_client_never_gets_chunked_coding(token, keep_alive):
    """RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client. An upstream's chunked body is relayed de-chunked
    under an HTTP/1.0 status line and ends with the connection; a Content-Length body can keep the connection."""
    upstream = chunked_upstream()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}", {"SIDECAR_THREADS": "1"})
    try:
        auth = f"Authorization: Bearer {token}\r\n".encode()
        ka = b"Connection: keep-alive\r\n" if keep_alive else b""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /chunked HTTP/1.0\r\n" + auth + ka + b"\r\n")
            data = read_until_close(s)  # closes even when keep-alive was asked: nothing else delimits the body
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200 OK\r\n"), head
            assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower(), head
            assert body == b"hello world"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /sized HTTP/1.0\r\n" + auth + ka + b"\r\n")
            head = read_until(s, b"hello world").partition(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.0 200 ok\r\n") and b"content-length: 11" in head
            if keep_alive:
                assert b"connection: keep-alive" in head, head
                s.sendall(b"GET /sized HTTP/1.0\r\n" + auth + ka + b"\r\n")
                assert read_until(s, b"hello world").startswith(b"HTTP/1.0 200 OK\r\n")
            else:
                assert b"connection: close" in head, head
                assert read_until_close(s) == b""
    finally:
        sidecar.stop()
        upstream.close()


MISFRAMED = {
    "/te-cl": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "/two-cl": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    "/gzip-te": b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nhello",
    "/fold": b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 5\r\n\r\nhello",
    "/bare-lf": b"HTTP/1.1 200 OK\ncontent-length: 5\n\nhello",
    "/unasked-101": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
}


def misframing_upstream() -> ScriptedUpstream:
    """Answers the paths of `MISFRAMED` with those bytes; `/interim` with a 100 and a 103 before its 200; `/trailers`
    chunked with trailers (hop-by-hop ones among them); anything else with a 5-byte body."""
    def answer(line: str) -> bytes:
        path = line.split()[1]
        if path in MISFRAMED:
            return MISFRAMED[path]
        if path == "/interim":
            return (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal")
        if path == "/bad-chunk":
            return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"
        if path == "/trailers":
            return (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nkeep-alive: timeout=1\r\n"
                    b"Upgrade: h2c\r\nproxy-authenticate: Basic\r\nConnection: keep-alive\r\nTE: trailers\r\nx-t: 1\r\n\r\n")
        return b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    return ScriptedUpstream(answer)


@pytest.mark.parametrize("path", sorted(MISFRAMED))
def test_a_misframed_upstream_response_is_a_502_and_its_connection_is_not_reused(token, path):
    """The sidecar parses upstream responses with nginx's strictness: an ambiguous or malformed frame is a 502
    `upstream_protocol_error`, never relayed, and the connection it came on is closed (its next bytes could be read
    as another client's response). The next request gets a fresh connection and a whole answer."""
    upstream = misframing_upstream()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}", {"SIDECAR_THREADS": "1"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            assert client.get("/ok").text == "hello"
            bad = client.get(path)
            assert bad.status_code == 502, (bad.status_code, bad.content)
            assert bad.json()["reason"] == "upstream_protocol_error"
            after = client.get("/ok")
            assert after.status_code == 200 and after.text == "hello"
        numbers = {line.split()[1]: n for n, line in upstream.seen}
        last_ok = [n for n, line in upstream.seen if line.split()[1] == "/ok"][-1]
        assert last_ok != numbers[path], upstream.seen  # the request after the bad answer never reuses its connection
    finally:
        sidecar.stop()
        upstream.close()


def test_a_body_misframed_after_its_head_is_cut_never_completed(token):
    """A framing error after the response head: a 502 while the head has not been written (it came in the same
    read), else a cut — the connection closes mid-body; never a short response the client could take for whole, and
    no byte past the bad frame."""
    upstream = misframing_upstream()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}", {"SIDECAR_THREADS": "1"})
    try:
        auth = f"Authorization: Bearer {token}\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /bad-chunk HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n")
            data = read_until_close(s)
            # The head and the bad chunk line come in one read (one send on loopback): the head is still held back
            # when the error is found, so nothing has reached the client and it gets the 502. Had they come in two
            # reads, the head would be out and the body cut: never a last chunk.
            head, _, body = data.partition(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 502"):
                assert json.loads(body)["reason"] == "upstream_protocol_error", data
            else:
                assert head.startswith(b"HTTP/1.1 200 OK\r\n"), data
                assert b"hello" not in body and not body.endswith(b"0\r\n\r\n"), body
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            assert client.get("/ok").text == "hello"
    finally:
        sidecar.stop()
        upstream.close()


def test_interim_responses_are_consumed_and_trailers_relayed(token):
    """1xx responses before the final one are not relayed; response trailers are, without their hop-by-hop fields."""
    upstream = misframing_upstream()
    sidecar, port = start_sidecar(f"http://127.0.0.1:{upstream.port}", {"SIDECAR_THREADS": "1"})
    try:
        auth = f"Authorization: Bearer {token}\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /interim HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            data = read_until(s, b"final")
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.count(b"HTTP/1.1") == 1, data
            s.sendall(b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n" + auth + b"\r\n")
            data = read_until(s, b"x-t: 1\r\n\r\n")
            head, _, body = data.partition(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower(), head
            assert body == b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n", body
        assert len({n for n, _ in upstream.seen}) == 1, upstream.seen  # one upstream connection for both
    finally:
        sidecar.stop()
        upstream.close()
