"""Forward-auth mode with a real nginx (Debian) using auth_request + auth_request_set in front of the real FastAPI
upstream, the real sidecar deciding; and the Prometheus metrics listener."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port, mint, start_sidecar, start_upstream

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture()
def nginx_stack(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        pytest.fail("nginx is required (apt-get install nginx-light)")
    upstream, uport = start_upstream()
    sidecar, sport = start_sidecar("echo")
    listen = free_port()
    conf = (DEPLOY / "forward-auth/nginx.conf").read_text()
    for old, new in [("listen 8081;", f"listen 127.0.0.1:{listen};"), ("server 127.0.0.1:8080;", f"server 127.0.0.1:{sport};"),
                     ("server 127.0.0.1:3000;", f"server 127.0.0.1:{uport};"), ("pid /tmp/nginx-authjs.pid;", f"pid {tmp_path}/nginx.pid;"),
                     ('"https://app.example.com" $http_origin;', '"http://app.test" $http_origin;')]:
        assert old in conf, old
        conf = conf.replace(old, new)
    conf = conf.replace("http {", f"http {{\n    access_log off;\n    client_body_temp_path {tmp_path}/body;\n    proxy_temp_path {tmp_path}/proxy;\n", 1)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    proc = subprocess.Popen([nginx, "-c", str(path), "-e", str(tmp_path / "error.log"), "-g", "daemon off; master_process off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{listen}/", timeout=0.5)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{listen}", "upstream": f"http://127.0.0.1:{uport}"}
    proc.terminate()
    proc.wait(10)
    sidecar.stop()
    upstream.stop()


def test_nginx_auth_request_with_the_real_sidecar(nginx_stack):
    url, up = nginx_stack["url"], nginx_stack["upstream"]
    token = mint('{"sub":"nginx-user","email":"n@example.com","name":"N","picture":null}')
    httpx.delete(up + "/requests")

    r = httpx.get(url + "/api/me", headers={"Cookie": f"authjs.session-token={token}", "X-Auth-Sub": "spoofed", "X-Auth-Email": "spoofed"})
    assert r.status_code == 200
    seen = {}
    for k, v in r.json()["headers"]:
        seen.setdefault(k, []).append(v)
    assert seen["x-auth-sub"] == ["nginx-user"] and seen["x-auth-email"] == ["n@example.com"]
    assert "x-auth-claims" in seen

    r = httpx.get(url + "/api/me", headers={"X-Auth-Sub": "spoofed"})
    assert r.status_code == 401
    expired = mint('{"sub":"old"}', "--now", "1700000000")
    assert httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {expired}"}).status_code == 401

    # a credentialed CORS preflight passes through nginx without credentials and without reaching the app
    r = httpx.options(url + "/api/me", headers={"Origin": "http://app.test", "Access-Control-Request-Method": "GET",
                                                "Access-Control-Request-Headers": "authorization"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "http://app.test"
    assert r.headers["access-control-allow-credentials"] == "true"
    r = httpx.get(url + "/api/me", headers={"Origin": "http://app.test", "Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.test"

    seen_requests = httpx.get(up + "/requests").json()["requests"]
    assert ["GET", "/api/me"] in seen_requests
    assert not [m for m, _ in seen_requests if m == "OPTIONS"]


def test_metrics_listener(token):
    mport = free_port()
    sidecar, sport = start_sidecar("echo", {"SIDECAR_METRICS_LISTEN": f"127.0.0.1:{mport}", "SIDECAR_THREADS": "1"})
    try:
        base = f"http://127.0.0.1:{sport}"
        for _ in range(3):
            assert httpx.get(base + "/api/x", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(base + "/api/x").status_code == 401
        text = httpx.get(f"http://127.0.0.1:{mport}/metrics").text
        assert 'authjs_sidecar_requests_total{outcome="ok",status_class="2xx"} 3' in text
        assert 'authjs_sidecar_requests_total{outcome="missing_token",status_class="4xx"} 1' in text
        # every request is counted once in the histogram (the start-up health probes included)
        total = sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("authjs_sidecar_requests_total{"))
        assert f"authjs_sidecar_request_duration_seconds_count {total}" in text and total >= 4
        assert "authjs_sidecar_token_cache_hits_total 2" in text
        assert "authjs_sidecar_open_connections" in text and "authjs_sidecar_upstream_pool_idle" in text
        assert token not in text
        # not on the proxy port
        assert httpx.get(base + "/metrics").status_code == 401
    finally:
        sidecar.stop()
