"""CORS proven in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by selenium) loads a
page from one origin that calls the sidecar on another with credentials and a real Auth.js Bearer token."""
from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import free_port, mint, start_sidecar, start_upstream

PAGE = b"<!doctype html><html><head><title>cors test page</title></head><body>page</body></html>"

FETCHES = r"""
const [sidecar, token, expired, done] = arguments;
(async () => {
  const out = {};
  async function attempt(name, url, init) {
    try {
      const r = await fetch(url, init);
      out[name] = {status: r.status, body: await r.json(), requestId: r.headers.get("x-request-id")};
    } catch (e) { out[name] = {error: String(e)}; }
  }
  await attempt("get", sidecar + "/api/me", {credentials: "include", headers: {Authorization: "Bearer " + token}});
  await attempt("post", sidecar + "/api/items", {method: "POST", credentials: "include",
      headers: {Authorization: "Bearer " + token, "Content-Type": "application/json"}, body: JSON.stringify({a: 1})});
  await attempt("expired", sidecar + "/api/me", {credentials: "include", headers: {Authorization: "Bearer " + expired}});
  done(out);
})();
"""


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def serve_page() -> tuple[ThreadingHTTPServer, int]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), PageHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


@pytest.fixture(scope="module")
def browser():
    if not shutil.which("chromedriver") or not shutil.which("chromium"):
        pytest.fail("chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def test_credentialed_cross_origin_calls_in_chromium(browser):
    page, page_port = serve_page()
    evil, evil_port = serve_page()
    upstream, uport = start_upstream()
    origin = f"http://127.0.0.1:{page_port}"
    sidecar, sport = start_sidecar(f"http://127.0.0.1:{uport}", {"SIDECAR_CORS_ORIGINS": origin})
    # another host name makes the sidecar a different origin from the page, whatever the ports
    sidecar_url = f"http://localhost:{sport}"
    token = mint('{"sub":"browser-user","email":"b@example.com","name":"B","picture":null}')
    expired = mint('{"sub":"old"}', "--now", "1700000000")
    try:
        httpx.delete(f"http://127.0.0.1:{uport}/requests")
        browser.get(origin + "/")
        out = browser.execute_async_script(FETCHES, sidecar_url, token, expired)

        assert out["get"]["status"] == 200, out
        seen = dict((k, v) for k, v in out["get"]["body"]["headers"])
        assert seen["x-auth-sub"] == "browser-user" and seen["x-auth-email"] == "b@example.com"
        assert out["get"]["requestId"]  # exposed through Access-Control-Expose-Headers

        assert out["post"]["status"] == 200, out
        assert out["post"]["body"]["method"] == "POST" and out["post"]["body"]["body_bytes"] == len('{"a":1}')

        # the sidecar's own 401 is readable by the page
        assert out["expired"]["status"] == 401, out
        assert out["expired"]["body"]["error"] == "invalid_token" and out["expired"]["body"]["reason"] == "expired"

        # no preflight reached the upstream: the sidecar answered every OPTIONS itself
        seen_requests = httpx.get(f"http://127.0.0.1:{uport}/requests").json()["requests"]
        assert ["GET", "/api/me"] in seen_requests and ["POST", "/api/items"] in seen_requests
        assert not [r for r in seen_requests if r[0] == "OPTIONS"], seen_requests

        # a page from an origin that is not allowed is blocked by the browser
        browser.get(f"http://127.0.0.1:{evil_port}/")
        blocked = browser.execute_async_script(FETCHES, sidecar_url, token, expired)
        for name in ("get", "post", "expired"):
            assert "error" in blocked[name] and "Failed to fetch" in blocked[name]["error"], blocked
    finally:
        sidecar.stop()
        upstream.stop()
        page.shutdown()
        evil.shutdown()


def test_preflight_answers_over_http():
    origin = "https://app.example.com"
    sidecar, sport = start_sidecar("echo", {"SIDECAR_CORS_ORIGINS": f"{origin},https://*.example.org"})
    url = f"http://127.0.0.1:{sport}/api/x"
    try:
        r = httpx.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "PUT",
                                        "Access-Control-Request-Headers": "authorization, content-type"})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
        assert "PUT" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        assert "Origin" in r.headers["vary"] and r.headers["access-control-max-age"] == "600"
        r = httpx.options(url, headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        r = httpx.options(url, headers={"Origin": "https://a.example.org", "Access-Control-Request-Method": "GET"})
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://a.example.org"
        # OPTIONS without Access-Control-Request-Method is not a preflight: it needs a token
        r = httpx.options(url, headers={"Origin": origin})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == origin
    finally:
        sidecar.stop()
