"""Process fixtures for the end-to-end tests: a real FastAPI app under uvicorn as the upstream, and the real
authjs-sidecar binary in front of it, all on loopback. Every process is stopped at the end of the session."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
SECRET = "e2e-secret-0123456789abcdefghijklmnopqrstuvwxyz"


def binary() -> str:
    b = os.environ.get("AUTHJS_SIDECAR_BIN") or str(ROOT / ".build" / "debug" / "authjs-sidecar")
    if not Path(b).exists():
        pytest.fail(f"sidecar binary not found at {b}: run `swift build --product authjs-sidecar` first")
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0, ok=(200, 401, 404)) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=1.0)
            if r.status_code in ok:
                return
            last = r.status_code
        except Exception as e:  # noqa: BLE001 - still starting
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up: {last}")


class Proc:
    def __init__(self, args, env=None, cwd=None, log_name="proc"):
        self.log_path = Path(os.environ.get("E2E_LOG_DIR", "/tmp")) / f"authjs-e2e-{log_name}-{os.getpid()}.log"
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, sig=signal.SIGTERM, timeout=10.0) -> int | None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.log.close()
        return self.p.returncode

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")


def start_upstream(port: int | None = None) -> tuple[Proc, int]:
    port = port or free_port()
    proc = Proc([sys.executable, "-m", "uvicorn", "upstream_app:app", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning", "--timeout-keep-alive", "30", "--no-proxy-headers"], cwd=str(E2E), log_name=f"upstream-{port}")
    wait_http(f"http://127.0.0.1:{port}/connections")
    return proc, port


def start_sidecar(upstream: str, extra_env: dict | None = None, args: list[str] | None = None) -> tuple[Proc, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "AUTH_SECRET", "NEXTAUTH_SECRET"))}
    env.update({"AUTH_SECRET": SECRET, "SIDECAR_LISTEN": f"127.0.0.1:{port}", "SIDECAR_UPSTREAM": upstream,
                "SIDECAR_THREADS": "2", "SIDECAR_PUBLIC_PATHS": "/docs,/public", "SIDECAR_LOG_LEVEL": "warning",
                "SIDECAR_FORWARD_AUTH_PATH": "/_sidecar/auth",
                # NIO crashes on work handed to a stopped event loop (it only logs otherwise), so a shutdown that
                # does it fails the tests that check the exit status.
                "SWIFTNIO_STRICT": "1"})
    env.update(extra_env or {})
    proc = Proc([binary(), "serve", *(args or [])], env=env, log_name=f"sidecar-{port}")
    wait_http(f"http://127.0.0.1:{port}/_sidecar/healthz", ok=(200,))
    return proc, port


def mint(claims: str = '{"sub":"user-1","email":"ada@example.com","name":"Ada","picture":null}', *args: str) -> str:
    out = subprocess.run([binary(), "mint", "--secret", SECRET, *args, claims], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def upstream():
    proc, port = start_upstream()
    yield {"proc": proc, "port": port, "url": f"http://127.0.0.1:{port}"}
    proc.stop()


@pytest.fixture(scope="session")
def sidecar(upstream):
    proc, port = start_sidecar(upstream["url"], {"SIDECAR_UPSTREAM_TIMEOUT": "2", "SIDECAR_MAX_BODY_BYTES": str(200 * 1024 * 1024)})
    yield {"proc": proc, "port": port, "url": f"http://127.0.0.1:{port}"}
    proc.stop()


@pytest.fixture(scope="session")
def token():
    return mint()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, until_close: bool = False, expect_responses: int = 1) -> bytes:
    """Sends raw bytes and reads until the peer closes or `expect_responses` complete responses arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            if not until_close and complete_responses(buf) >= expect_responses:
                break
        return buf


def complete_responses(buf: bytes) -> int:
    """Counts complete HTTP/1.1 responses with content-length framing (what the sidecar's own answers use)."""
    n = 0
    rest = buf
    while True:
        head_end = rest.find(b"\r\n\r\n")
        if head_end < 0:
            return n
        head = rest[:head_end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if head.startswith("http/1.1 1") and not head.startswith("http/1.1 101"):
            rest = rest[head_end + 4:]
            continue
        if len(rest) < head_end + 4 + length:
            return n
        rest = rest[head_end + 4 + length:]
        n += 1
