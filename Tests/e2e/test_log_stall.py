"""A log reader that stops reading must not stop the proxy: the real binary with its stdout and stderr on pipes nobody
reads (a stuck log shipper, `sidecar | less` left open). With blocking writes every event loop stopped once the pipe
filled (~350 requests) and SIGTERM could not end the process; now lines beyond the log buffer are dropped and counted,
and the shutdown gives the writer two seconds."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from conftest import SECRET, binary, free_port, wait_http

BATCH = 50
REQUESTS = 12_000  # ~1.8 MB of access lines: more than the pipe (64 KiB) and the 1 MiB buffer hold


def pipelined_gets(port: int, total: int) -> int:
    """Sends `total` keep-alive GETs in pipelined batches; returns how many 200s came back (stops at a 5 s stall)."""
    done = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        request = b"GET /public/log-stall HTTP/1.1\r\nHost: sidecar\r\n\r\n" * BATCH
        while done < total:
            s.sendall(request)
            seen = b""
            try:
                while seen.count(b"HTTP/1.1 200") < BATCH:
                    chunk = s.recv(65536)
                    if not chunk:
                        return done
                    seen += chunk
            except socket.timeout:
                return done + seen.count(b"HTTP/1.1 200")
            done += BATCH
    return done


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_stalled_log_reader_costs_lines_not_requests(log_format):
    port, mport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "AUTH_SECRET", "NEXTAUTH_SECRET"))}
    env.update({"AUTH_SECRET": SECRET, "SIDECAR_LISTEN": f"127.0.0.1:{port}", "SIDECAR_UPSTREAM": "echo",
                "SIDECAR_PUBLIC_PATHS": "/public", "SIDECAR_THREADS": "2", "SIDECAR_LOG_FORMAT": log_format,
                "SIDECAR_LOG_LEVEL": "info", "SIDECAR_METRICS_LISTEN": f"127.0.0.1:{mport}", "SWIFTNIO_STRICT": "1"})
    # Both streams on pipes that are never read while the requests run.
    proc = subprocess.Popen([binary(), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_sidecar/healthz", ok=(200,))
        served = pipelined_gets(port, REQUESTS)
        assert served == REQUESTS, f"the proxy stalled behind its log after {served} requests"

        metrics = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text
        dropped = [int(float(line.split()[-1])) for line in metrics.splitlines()
                   if line.startswith("authjs_sidecar_log_lines_dropped_total")]
        assert dropped and dropped[0] > 0, "lines beyond the buffer are counted as dropped"

        # SIGTERM with the pipes still unread: the drain gives up after its two seconds.
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("the shutdown hung on the unread log pipe")
        assert code == 0
        assert time.monotonic() - started < 10

        # What reached the pipe before the exit (the buffer's rest is given up with the process) is whole lines:
        # every access line parses (JSON) or has its fields (text).
        stream = proc.stdout if log_format == "json" else proc.stderr
        lines = [l for l in stream.read().decode().splitlines() if "log-stall" in l]
        assert len(lines) > 100
        for line in lines:
            if log_format == "json":
                record = json.loads(line)
                assert record["path"] == "/public/log-stall" and record["status"] == 200
            else:
                assert " info authjs-sidecar: access request_id=" in line and " status=200 " in line
        assert len(lines) + dropped[0] <= REQUESTS
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_a_burst_of_pipelined_requests_loses_no_line_to_a_reader_that_keeps_up(tmp_path):
    """One loop iteration can finish thousands of pipelined requests (a client's 256 KiB of short requests, all
    answered locally): their lines are handed over in pieces, so a reader that keeps up (a file) gets every one. When
    a whole iteration went over as one batch, a batch larger than the buffer was dropped entirely — a client could
    remove its own 401 lines from the log (9 362 of 20 000 in review)."""
    port, mport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "AUTH_SECRET", "NEXTAUTH_SECRET"))}
    env.update({"AUTH_SECRET": SECRET, "SIDECAR_LISTEN": f"127.0.0.1:{port}", "SIDECAR_UPSTREAM": "echo",
                "SIDECAR_THREADS": "1", "SIDECAR_LOG_FORMAT": "json", "SIDECAR_METRICS_LISTEN": f"127.0.0.1:{mport}",
                "SWIFTNIO_STRICT": "1"})
    total = 20_000
    with open(tmp_path / "stdout.log", "wb") as out:
        proc = subprocess.Popen([binary(), "serve"], env=env, stdout=out, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/_sidecar/healthz", ok=(200,))
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                request = b"GET /burst HTTP/1.1\r\nHost: a\r\n\r\n" * total
                import threading
                sender = threading.Thread(target=s.sendall, args=(request,))
                sender.start()
                answers = b""
                while answers.count(b"HTTP/1.1 401") < total:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    answers += chunk
                sender.join()
            assert answers.count(b"HTTP/1.1 401") == total
            time.sleep(0.5)
            metrics = httpx.get(f"http://127.0.0.1:{mport}/metrics", timeout=5).text
            assert "authjs_sidecar_log_lines_dropped_total 0" in metrics.splitlines()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            assert proc.wait(15) == 0
    lines = [json.loads(l) for l in (tmp_path / "stdout.log").read_text().splitlines() if '"path":"/burst"' in l]
    assert len(lines) == total and all(l["status"] == 401 for l in lines)
