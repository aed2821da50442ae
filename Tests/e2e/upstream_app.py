"""Real upstream used by the authjs-sidecar end-to-end tests.

Run with:  uvicorn upstream_app:app --host 127.0.0.1 --port 8000
(from the Tests/e2e directory, or with --app-dir Tests/e2e).

Endpoints
---------
* ``ANY /{path}``            echo: method, path, query, every header exactly as
                             received (ASGI order, lower-cased names), body size
                             and sha256 (body is hashed while streaming).
* ``GET /stream/{n}``        n bytes of b"x" in 64 KiB chunks, chunked (no
                             content-length).
* ``GET /fixed/{n}``         n bytes of b"x" with an explicit content-length,
                             generated lazily (never all n bytes in memory).
* ``POST /upload``           streams the request body; returns size + sha256.
* ``GET /slow/{seconds}``    sleeps, then answers JSON.
* ``GET /abort/{n}``         announces content-length 2n, sends n bytes, then
                             drops the connection (exception mid-stream).
* ``GET /stall/{n}``         announces content-length 2n, sends n bytes, then
                             sends nothing more (sleeps for an hour).
* ``GET /status/{code}``     that status with an empty body.
* ``GET /hop-response``      "ok" with ``Connection: <listed>`` (query ``listed``,
                             default ``X-Upstream-Hop``), ``X-Upstream-Hop``,
                             ``X-Kept`` and ``X-Request-Id: upstream-id``.
* ``GET /connections``       number of distinct client (host, port) peers seen
                             so far (HTTP and websocket), i.e. upstream TCP
                             connections opened by the sidecar.
                             ``DELETE /connections`` resets the set.
* ``WS  /ws``                echoes text messages as ``"<x-auth-sub>:<msg>"``
                             using the x-auth-sub header seen at handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import AsyncIterator

from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

CHUNK = 64 * 1024
_CHUNK_BYTES = b"x" * CHUNK

# Distinct (host, port) peers seen by the app, across HTTP and websocket.
_peers: set[tuple[str, int]] = set()
# Requests per (host, port) peer: a peer whose count grew made requests since a snapshot, even when the kernel gave
# a new connection the port of an old one.
_peer_requests: dict[tuple[str, int], int] = {}
# Every (method, path) received, so tests can prove what did (not) reach the upstream, e.g. no CORS preflight.
_requests: list[tuple[str, str]] = []


class PeerRecorder:
    """Pure ASGI middleware recording every client peer (no body buffering)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client:
                peer = (str(client[0]), int(client[1]))
                _peers.add(peer)
                _peer_requests[peer] = _peer_requests.get(peer, 0) + 1
            if scope["type"] == "http" and scope["path"] != "/requests":
                _requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


app = FastAPI(title="authjs-sidecar e2e upstream", docs_url=None, redoc_url=None, openapi_url=None)
app.add_middleware(PeerRecorder)


def _x_bytes(n: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        remaining = n
        while remaining > 0:
            size = min(CHUNK, remaining)
            yield _CHUNK_BYTES if size == CHUNK else b"x" * size
            remaining -= size

    return gen()


async def _hash_body(request: Request) -> tuple[int, str]:
    digest = hashlib.sha256()
    total = 0
    async for chunk in request.stream():
        if chunk:
            total += len(chunk)
            digest.update(chunk)
    return total, digest.hexdigest()


@app.get("/stream/{n}")
async def stream(n: int) -> StreamingResponse:
    return StreamingResponse(_x_bytes(n), media_type="application/octet-stream")


@app.get("/fixed/{n}")
async def fixed(n: int) -> StreamingResponse:
    return StreamingResponse(
        _x_bytes(n),
        media_type="application/octet-stream",
        headers={"content-length": str(n)},
    )


@app.post("/upload")
async def upload(request: Request) -> JSONResponse:
    n, sha = await _hash_body(request)
    return JSONResponse({"body_bytes": n, "body_sha256": sha})


@app.get("/slow/{seconds}")
async def slow(seconds: float) -> JSONResponse:
    await asyncio.sleep(seconds)
    return JSONResponse({"slept": seconds})


@app.get("/abort/{n}")
async def abort(n: int) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        async for chunk in _x_bytes(n):
            yield chunk
        # Give the server a chance to flush what was sent, then blow up:
        # the response has started, so uvicorn can only drop the connection.
        await asyncio.sleep(0.05)
        raise RuntimeError("deliberate abort mid-body (e2e test)")

    return StreamingResponse(
        gen(),
        media_type="application/octet-stream",
        headers={"content-length": str(2 * n)},
    )


@app.get("/stall/{n}")
async def stall(n: int) -> StreamingResponse:
    async def gen() -> AsyncIterator[bytes]:
        async for chunk in _x_bytes(n):
            yield chunk
        await asyncio.sleep(3600)  # the response has started and stops: only a read timeout ends it

    return StreamingResponse(gen(), media_type="application/octet-stream", headers={"content-length": str(2 * n)})


@app.get("/status/{code}")
async def status(code: int) -> Response:
    # Starlette omits content-length for 1xx/204/304 and sends no body.
    return Response(status_code=code)


@app.get("/hop-response")
async def hop_response(listed: str = "X-Upstream-Hop") -> Response:
    # Fields named in Connection are hop-by-hop (RFC 9110 §7.6.1): a proxy must not pass them on.
    return Response(content=b"ok", headers={"Connection": listed, "X-Upstream-Hop": "secret", "X-Kept": "1",
                                            "X-Request-Id": "upstream-id"})


@app.get("/connections")
async def connections() -> JSONResponse:
    return JSONResponse({"connections": len(_peers), "peers": sorted([h, p] for h, p in _peers),
                         "requests": sorted([h, p, n] for (h, p), n in _peer_requests.items())})


@app.delete("/connections")
async def reset_connections() -> JSONResponse:
    _peers.clear()
    _peer_requests.clear()
    return JSONResponse({"connections": 0})


@app.get("/requests")
async def requests_seen() -> JSONResponse:
    return JSONResponse({"requests": [[m, p] for m, p in _requests]})


@app.delete("/requests")
async def reset_requests() -> JSONResponse:
    _requests.clear()
    return JSONResponse({"requests": []})


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    sub = websocket.headers.get("x-auth-sub", "")
    await websocket.accept()
    try:
        while True:
            msg = await websocket.receive_text()
            await websocket.send_text(f"{sub}:{msg}")
    except WebSocketDisconnect:
        pass


async def echo(request: Request) -> JSONResponse:
    scope = request.scope
    n, sha = await _hash_body(request)
    client = scope.get("client")
    return JSONResponse(
        {
            "method": request.method,
            "path": scope["path"],
            "raw_path": (scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "http_version": scope.get("http_version"),
            "client": [client[0], client[1]] if client else None,
            "body_bytes": n,
            "body_sha256": sha,
        }
    )


class AnyMethodEcho:
    """Raw ASGI endpoint: Starlette only restricts methods (to GET) for plain
    function endpoints, so wrapping the echo in an ASGI class lets any method
    (including non-standard ones such as PROPFIND) reach it."""

    async def __call__(self, scope, receive, send):
        response = await echo(Request(scope, receive))
        await response(scope, receive, send)


# Registered last so every specific route above wins.
app.router.routes.append(Route("/{path:path}", AnyMethodEcho(), methods=None, include_in_schema=False))
