#!/usr/bin/env python3
"""Builds the seed corpora for the SidecarFuzz targets.

    python3 Tests/fuzz/make-corpus.py [--out DIR] [--max-bytes N] [TARGET...]

Writes DIR/<target>/<sha1 of the seed> (default DIR: .build-fuzz/corpus) for each target (default: all). Seeds come from

  * fixtures/generated.json and fixtures/vectors/**/*.json: every compact token, cookie header / authorization pair,
    claims object, protected header and raw payload found in them;
  * tokens minted here with the harness's own keys (secrets "fuzz-secret-1"/"fuzz-secret-0", the four default cookie
    names as v5 salts), so the fuzzer starts from inputs that pass the cryptography and reaches the claims checks.
    Minting needs the `cryptography` package (as fixtures/generate.py does); without it only fixture tokens are used;
  * hand-written seeds for paths, YAML configs (plus deploy/sidecar.yaml when present), JSON edge cases, headers,
    client byte streams (pipeline, forward, client-request) and upstream responses;
  * the reproducers in Tests/fuzz/crashes/<target>-<n> (regression inputs).

Deterministic: the same fixtures give the same files. Existing files in the target directories are kept (libFuzzer adds
its own finds there), so the corpus grows across runs; delete DIR to start over.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["token-v5", "token-v4", "token-jws", "token-auto", "cookie", "headers", "path", "config", "json", "pipeline",
           "forward", "upstream-response", "client-request"]

# Must match Sources/SidecarFuzz/Targets.swift (Fixed).
SECRETS = ["fuzz-secret-1", "fuzz-secret-0"]
SALTS = ["__Secure-authjs.session-token", "authjs.session-token", "__Secure-next-auth.session-token", "next-auth.session-token"]
IAT, EXP = 1767225600, 4070908800  # 2026-01-01, 2099-01-01; the harness's `now` is 1800000000

try:
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover
    HAVE_CRYPTO = False

rng = random.Random(20260101)
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*){2,4}$")


# ------------------------------------------------------------------------------------------------ minting
def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def b64u_dec(s: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        return None


def jdump(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def as_bytes(x) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8", "surrogatepass")
    return jdump(x)


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def v5_key(secret: str, salt: str, enc: str) -> bytes:
    return hkdf(secret.encode(), salt.encode(), f"Auth.js Generated Encryption Key ({salt})".encode(),
                64 if enc == "A256CBC-HS512" else 32)


def v4_key(secret: str) -> bytes:
    return hkdf(secret.encode(), b"", b"NextAuth.js Generated Encryption Key", 32)


def thumbprint(key: bytes) -> str:
    canon = ('{"k":"%s","kty":"oct"}' % b64u(key)).encode()
    return b64u((hashlib.sha512 if len(key) == 64 else hashlib.sha256)(canon).digest())


def jwe(header: dict | bytes, plaintext: bytes, key: bytes, enc: str) -> str:
    hseg = b64u(as_bytes(header))
    aad = hseg.encode("ascii")
    if enc == "A256CBC-HS512":
        iv = rng.randbytes(16)
        p = padding.PKCS7(128).padder()
        ct = Cipher(algorithms.AES(key[32:]), modes.CBC(iv)).encryptor()
        ct = ct.update(p.update(plaintext) + p.finalize()) + ct.finalize()
        tag = hmac.new(key[:32], aad + iv + ct + (len(aad) * 8).to_bytes(8, "big"), hashlib.sha512).digest()[:32]
        return ".".join([hseg, "", b64u(iv), b64u(ct), b64u(tag)])
    iv = rng.randbytes(12)
    out = AESGCM(key).encrypt(iv, plaintext, aad)
    return ".".join([hseg, "", b64u(iv), b64u(out[:-16]), b64u(out[-16:])])


def jws(header: dict | bytes, payload: bytes, secret: str, alg: str) -> str:
    h = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing = b64u(as_bytes(header)) + "." + b64u(payload)
    return signing + "." + b64u(hmac.new(secret.encode(), signing.encode("ascii"), h).digest())


def mint_all(payload: bytes, header: dict | None = None) -> dict[str, list[str]]:
    """The payload under every format the harness accepts; `header` (a fixture's protected header) is reused,
    re-keyed, where its alg/enc make sense."""
    out: dict[str, list[str]] = {"v5": [], "v4": [], "jws": []}
    if not HAVE_CRYPTO:
        return out
    secret = rng.choice(SECRETS)
    salt = rng.choice(SALTS)
    for enc in ("A256CBC-HS512", "A256GCM"):
        key = v5_key(secret, salt, enc)
        h = {"alg": "dir", "enc": enc, "kid": thumbprint(key)}
        out["v5"].append(jwe(h, payload, key, enc))
    out["v5"].append(jwe({"alg": "dir", "enc": "A256CBC-HS512"}, payload, v5_key(secret, salt, "A256CBC-HS512"), "A256CBC-HS512"))
    out["v4"].append(jwe({"alg": "dir", "enc": "A256GCM"}, payload, v4_key(secret), "A256GCM"))
    alg = rng.choice(["HS256", "HS384", "HS512"])
    out["jws"].append(jws({"alg": alg, "typ": "JWT"}, payload, secret, alg))
    if isinstance(header, dict):
        h = dict(header)
        if h.get("alg") == "dir" and h.get("enc") in ("A256CBC-HS512", "A256GCM"):
            enc = h["enc"]
            key = v5_key(secret, salt, enc)
            if "kid" in h:
                h["kid"] = thumbprint(key)
            out["v5"].append(jwe(h, payload, key, enc))
            if enc == "A256GCM":
                h.pop("kid", None)
                out["v4"].append(jwe(h, payload, v4_key(secret), enc))
        elif h.get("alg") in ("HS256", "HS384", "HS512"):
            out["jws"].append(jws(h, payload, secret, h["alg"]))
    return out


# ------------------------------------------------------------------------------------------------ fixture scanning
def load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except Exception as e:  # pragma: no cover
        print(f"make-corpus: skipping {path}: {e}", file=sys.stderr)
        return None


def walk(value, found: dict):
    if isinstance(value, dict):
        req = value.get("request")
        if isinstance(req, dict) and ("cookie_header" in req or "authorization" in req):
            found["requests"].append((req.get("cookie_header"), req.get("authorization")))
        for name in ("expected_claims", "claims", "payload"):
            if isinstance(value.get(name), dict):
                found["claims"].append(value[name])
        for name in ("header",):
            if isinstance(value.get(name), dict):
                found["headers"].append(value[name])
        if isinstance(value.get("payload"), (dict, str)) and isinstance(value.get("token"), str):
            found["payloads"].append((value["payload"], value.get("header")))
        if isinstance(value.get("cookies"), list):
            pairs = [c for c in value["cookies"] if isinstance(c, dict) and "name" in c and "value" in c]
            if pairs:
                found["requests"].append(("; ".join(f"{c['name']}={c['value']}" for c in pairs), None))
        for v in value.values():
            walk(v, found)
    elif isinstance(value, list):
        for v in value:
            walk(v, found)
    elif isinstance(value, str):
        if len(value) >= 5 and TOKEN_RE.match(value) and value.startswith("ey"):
            found["tokens"].append(value)


def scan_fixtures() -> dict:
    found = {"tokens": [], "requests": [], "claims": [], "headers": [], "payloads": []}
    files = [ROOT / "fixtures" / "generated.json"] + sorted((ROOT / "fixtures" / "vectors").rglob("*.json"))
    for f in files:
        if f.exists():
            data = load_json(f)
            if data is not None:
                walk(data, found)
    return found


def token_kind(tok: str) -> str:
    segs = tok.split(".")
    if len(segs) == 3:
        return "jws"
    h = b64u_dec(segs[0]) or b""
    try:
        enc = json.loads(h).get("enc")
    except Exception:
        enc = None
    return "v5" if enc == "A256CBC-HS512" else "v4v5"


# ------------------------------------------------------------------------------------------------ hand-written seeds
PATHS = [
    "", "admin", "admin/", "a/b/c", "a/../b", "a/./b", "../../etc/passwd", "public/../admin", "public/%2e%2e/admin",
    "public/%2E%2E/admin", "public/.%2e/admin", "a//b///c", "a/%2F/b", "a%2fb", "a%5cb", "a\\b", "a/%00", "a;b=c/d",
    "admin;jsessionid=1", "..;/admin", "%2e/x", ".%2E", "a/b?x=1&y=/../z", "?", "??", "a?b?c", "%7Euser/%7e",
    "%41%42%43", "%c3%a9t%C3%A9", "%zz", "%4", "%", "é/ü", "a/\u00a0/b", "a b", "a\tb", "%20", "%7f", "%1f", "~/-._",
    "docs/", "docs/./.././/x/", ".", "..", "./", "../", "a/..", "a/.", "a/b/../../..", "%25", "%2525", "%3B/x", ";",
    "/", "//", "a/;/b", "a/;x=1;y=2/b", "api/v1/users/42?expand=true#frag", "#x", "%23", "a" * 300,
]

JSON_SEEDS = [
    "{}", "{\"a\":1}", " \t\r\n{\"a\":[]}", "{\"a\":{\"b\":{\"c\":{}}}}", "{\"a\":1,\"a\":2}", "{\"\":\"\"}",
    "{\"s\":\"\\u0000\\u001f\\u007f\\ud83d\\ude00\"}", "{\"s\":\"\\ud800\"}", "{\"n\":1e308,\"m\":-0.0,\"i\":9223372036854775807}",
    "{\"n\":1e309}", "{\"i\":-9223372036854775808,\"j\":9223372036854775808}", "{\"f\":1.0,\"g\":1E2,\"h\":1e-7,\"k\":5e-324}",
    "{\"t\":true,\"f\":false,\"n\":null}", "[1]", "1", "\"x\"", "null", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
    "{\"a\":\"\u00e9\u4e2d\U0001F600\"}", "{\"a\":\"x\\\"y\\\\z\\/\"}", "{\"a\":[" * 31 + "]" * 31 + "}",
    "{\"a\":" + "[" * 33 + "]" * 33 + "}", "{\"a\":\"" + "[" * 40 + "\"}", "{\"a\":1}garbage", "{\"a\":1} ", "\ufeff{}",
]

CLAIMS_SEEDS = [
    {"sub": "user_42", "email": "a@example.com", "name": "Grace Hopper", "picture": "https://x/y.png"},
    {"sub": "utf-8''already", "name": "Zoë \u4e2d\u6587 \U0001F600", "email": "a\r\nX-Injected: 1"},
    {"sub": "\u0000nul", "name": "tab\there", "email": "del\u007f", "picture": "%41%zz"},
    {"roles": ["admin", "user", 3, True, None, {"x": 1}], "groups": "a,b", "email_verified": True, "exp": 4070908800},
    {"address": {"country": "DE", "street": "Straße 1"}, "address.country": "direct", "a": {"b": {"c": "deep"}}},
    {"sub": 12345, "name": None, "email": ["x", ["y"]], "picture": 1.5e300, "user": {"name": {"first": "A"}}},
    {"": "empty key", "sub": "", "name": "utf-8''", "email": "UTF-8''x", "picture": "utf-8'"},
    {"sub": "x" * 9000},
    {"sub": "e\u0301", "name": "\u00e9", "email": "\r\n", "picture": "\ufeff"},
]

CONFIG_SEEDS = [
    "",
    "listen: 127.0.0.1:9000\nupstream: echo\n",
    "listen: unix:/run/s.sock\nupstream: unix:/run/app.sock\nthreads: 2\n",
    "upstream: http://127.0.0.1:8000/base/\npublic_paths: [/docs, /health/]\ncookie_names: authjs.session-token\n",
    "token_formats: [authjs-v5, jws]\nclock_tolerance: 0\nshutdown_timeout: 3600\nmax_body_bytes: 0\n",
    "identity_headers:\n  sub: X-User\n  org.id: X-Auth-Org\nclaims_header: ''\nrealm: api\n",
    "routes:\n  - path: /admin\n    mode: required\n    require:\n      - claim: roles\n        contains: admin\n"
    "  - path: /a/*/b/**\n    mode: public\n  - {path: /x, match: exact, methods: [GET, post]}\n"
    "  - {path: /y, methods: 'GET, PUT', mode: optional, require: [{claim: email_verified, equals: true}, {claim: sub, present: yes}]}\n",
    "routes: not-a-list\n",
    "routes:\n  - 1\n  - {path: relative}\n  - {path: /z, match: regex, mode: maybe}\n  - {path: /p, mode: public, require: [{claim: a, equals: [1, 2.5, null, x]}]}\n",
    "listen: '[::1]:8080'\nupstream: http://[::1]\nstrip_cookie: yes\nstrip_authorization: on\naccess_log: 0\n",
    "threads: cores\nlog_level: debug\nlog_format: json\nhealth_prefix: /_h/\nmax_header_bytes: 1024\nidle_timeout: 0.1\n",
    "unknown: 1\nthreads: nan\nclock_tolerance: -1\nhealth_prefix: x\nrealm: 'a\"b'\nlog_level: loud\n",
    "- just\n- a\n- list\n",
    "a: &x [1, 2]\nb: *x\n",
    "cookie_names: [\"bad name\", ok, ok, '']\nidentity_headers: [sub=Host, name=X-Name, nope]\n",
    "%YAML 1.2\n---\nlisten: 0.0.0.0:80\n...\n",
    "listen: !!str 0.0.0.0:1\nupstream: !custom echo\n",
    "{listen: \"0.0.0.0:8080\", upstream: \"echo\", routes: [{path: \"/**\", match: glob}]}\n",
    "key: [[[[[[[[[[]]]]]]]]]]\n",
    "key: \"\\u0000\\x01\\U0001F600\"\n",
]


# ------------------------------------------------------------------------------------------------ main
# Requests as clients send them, and as attackers do: pipelined, split, chunked, smuggling shapes, oversized, garbage.
PIPELINE_SEEDS = [
    b"\x00GET /_sidecar/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x05GET /_sidecar/readyz HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=abc\r\n\r\n",
    b"\x07GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\nGET /_sidecar/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00OPTIONS /api HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example.com\r\nAccess-Control-Request-Method: POST\r\n"
    b"Access-Control-Request-Headers: authorization\r\n\r\n",
    b"\x00OPTIONS /api HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
    b"\x03POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
    b"\x00\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"\x00GET /_sidecar/healthz HTTP/1.0\r\n\r\n",
    b"\x00GET /_sidecar/healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /_sidecar/healthz HTTP/1.0\r\n\r\n",
    b"\x02GET /api HTTP/1.1\r\nHost: a\r\n",
    b"\x00TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"\x00GET /_sidecar/auth HTTP/1.1\r\nHost: a\r\nX-Forwarded-Uri: /x\r\nX-Forwarded-Method: GET\r\n\r\n",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    b"\x00GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\n\r\n",
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x.y.z\r\nX-Auth-Sub: admin\r\n\r\n",
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",
    b"\x00GET /%2e%2e/_sidecar/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00GET http://a/_sidecar/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token.0=a; authjs.session-token.1=b\r\n\r\n",
    b"\x01GET /api HTTP/1.1\nHost: a\n\n",
    b"\x00GET /api HTTP/2.0\r\nHost: a\r\n\r\n",
    b"\x00PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    # "@W": 61 s pass (past every deadline) — a body stalled after a 401, a head stalled, an idle keep-alive.
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc@Wdefghij",
    b"\x03GET /api HTTP/1.1\r\nHost: a\r\n@W\r\n",
    b"\x00GET /_sidecar/healthz HTTP/1.1\r\nHost: a\r\n\r\n@WGET /_sidecar/healthz HTTP/1.1\r\nHost: a\r\n\r\n",
]


# Authenticated requests ("@T": a valid token) that try to smuggle identity headers past the sidecar.
FORWARD_SEEDS = [
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nX-Auth-Sub: admin\r\nx-auth-email: root@x\r\nX-AUTH-Role: admin\r\n"
    b"X-Forwarded-For: 1.2.3.4\r\nCookie: authjs.session-token=@T\r\n\r\n",
    b"\x05GET /api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer @T\r\nX-Auth-Claims: e30\r\n\r\n",
    b"\x07GET /a HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=@T\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n"
    b"Cookie: authjs.session-token=@T\r\n\r\nPOST /c HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=@T\r\n"
    b"Content-Length: 3\r\n\r\nabc",
    b"\x03POST /api HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=@T\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\nX-Auth-Sub: trailer\r\n\r\n",
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nConnection: X-Auth-Sub, keep-alive\r\nX-Auth-Sub: admin\r\n"
    b"Cookie: authjs.session-token=@T\r\n\r\n",
    b"\x00GET /api HTTP/1.0\r\nCookie: authjs.session-token=@T\r\n\r\n",
    b"\x00GET /api HTTP/1.1\r\nHost: a\r\nX_Auth_Sub: admin\r\nX-Auth-Sub : admin\r\nCookie: authjs.session-token.0=@T\r\n\r\n",
    b"\x00OPTIONS /api HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example.com\r\nCookie: authjs.session-token=@T\r\n\r\n",
    # "@W": 61 s pass — a forwarded body stalled (408), a chunked body stalled, a pause between requests.
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=@T\r\nContent-Length: 10\r\n\r\nabc@Wdefghij",
    b"\x02POST /api HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=@T\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n@W0\r\n\r\n",
    b"\x00GET /a HTTP/1.1\r\nHost: a\r\nCookie: authjs.session-token=@T\r\n\r\n@WGET /b HTTP/1.1\r\nHost: a\r\n"
    b"Cookie: authjs.session-token=@T\r\n\r\n",
]


# Upstream response streams (byte 0: bit 0 the first request is a HEAD, bits 1-2 one to four requests outstanding,
# bits 3-7 the read size, 0 = one read). Framing by length, chunks and close; interim responses; trailers; the
# refusals the parser makes (TE with CL, obs-fold, bare LF, conflicting lengths).
UPSTREAM_RESPONSE_SEEDS = [
    b"\x00HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
    b"\x01HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"\x03HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"\x08HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
    b"\x10HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x00HTTP/1.1 200 OK\r\n\r\nall of it until the close",
    b"\x06HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nHTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
    b"\x18HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"\x00HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
    b"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"\x00HTTP/1.1 200 OK\r\nA: b\r\n c\r\nContent-Length: 0\r\n\r\n",
    b"\x00HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    b"\x00HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    b"\x00HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x02HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 \r\nA:  x y \t\r\nB:\r\nContent-Length:0\r\n\r\n",
]


# Client byte streams for the request parser (byte 0: bits 0-4 the read size, 1-31 bytes, 0 = one read). Valid
# requests of every framing, pipelining, upgrades and CONNECT with bytes behind them, HTTP/1.0, and the shapes the
# parser refuses on purpose (obs-fold, bare LF, TE with CL, two CLs) or where llhttp is lenient.
CLIENT_REQUEST_SEEDS = [
    b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x01GET /a?b=c HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: x/1\r\n\r\n",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"\x03POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1;q=\"a b\"\r\nhello\r\nA\r\n0123456789\r\n"
    b"0;last\r\nX-Trailer: t\r\nX-Other:  v  \r\n\r\n",
    b"\x07POST /api HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    b"\x02GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\nDELETE /c HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x85abcdhello",
    b"\x05GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    b"\x00POST /up HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\nGET /after HTTP/1.1\r\n\r\n",
    b"\x00CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01\x02\x00",
    b"\x00CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
    b"\x00GET / HTTP/1.0\r\n\r\n",
    b"\x00GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nConnection: close, x\r\n\r\n\r\n",
    b"\x00\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    b"\x00\nGET / HTTP/1.1\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
    b"\x00GET / HTTP/1.1\nHost: a\n\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
    b"\x00POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\nabcd",
    b"\x00POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd",
    b"\x00POST / HTTP/1.1\r\nContent-Length: 00000000000000000004\r\n\r\nabcd",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x00POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n",
    b"\x00GET /" + b"p" * 2000 + b" HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n",
    b"\x00M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n",
    b"\x00QUERY /q HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
    b"\x00SOURCE /s HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00PROPFIND /d HTTP/1.1\r\nDepth: 1\r\n\r\nMKCALENDAR /c HTTP/1.1\r\n\r\nPURGE /p HTTP/1.1\r\n\r\n",
    b"\x00OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00GET http://example.com:8080/a/b?c#d HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"\x00GET /caf\xc3\xa9 HTTP/1.1\r\nX-Latin: caf\xe9 \xff\xfe\r\nX-Utf8: \xe2\x82\xac\r\n\r\n",
    b"\x00get / HTTP/1.1\r\n\r\n",
    b"\x00GET  / HTTP/1.1\r\n\r\n",
    b"\x00GET / HTTP/1.1 \r\n\r\n",
    b"\x00GET / HTTP/2.0\r\n\r\n",
    b"\x00GET / HTTP/0.9\r\n\r\n",
    b"\x00GET /\r\n\r\n",
    b"\x00PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nX : y\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\n: empty\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nX:\r\nY: \t\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"\x00GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
    b"\x00POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\n",
    b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n\r",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / ".build-fuzz" / "corpus"))
    ap.add_argument("--max-bytes", type=int, default=16384, help="skip seeds larger than this (default 16384)")
    ap.add_argument("targets", nargs="*", default=TARGETS)
    args = ap.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        print(f"make-corpus: unknown target(s) {unknown}; known: {' '.join(TARGETS)}", file=sys.stderr)
        return 2

    found = scan_fixtures()
    seeds: dict[str, list[bytes]] = {t: [] for t in TARGETS}

    def add(target: str, data) -> None:
        seeds[target].append(as_bytes(data))

    # Tokens from the fixtures, by the format their segments suggest.
    for tok in found["tokens"]:
        kind = token_kind(tok)
        add("token-auto", tok)
        if kind == "jws":
            add("token-jws", tok)
        else:
            add("token-v5", tok)
            if kind == "v4v5":
                add("token-v4", tok)

    # Minted tokens: every fixture payload (valid JSON or not) and every claims object, under the harness's keys.
    payloads = [(p, h) for p, h in found["payloads"]]
    payloads += [(c, None) for c in found["claims"]] + [(c, None) for c in CLAIMS_SEEDS]
    payloads += [({"sub": "u", "iat": IAT, "exp": EXP}, None), ({"exp": 1799999990}, None), ({"nbf": 1800000014}, None),
                 ({"exp": "soon"}, None), ({"sub": "u"}, {"alg": "dir", "enc": "A256GCM", "sub": "u"}),
                 ({"iss": 1}, {"alg": "HS256", "iss": 1.0}), ("not json", None), ("[1,2]", None), ("", None)]
    minted: dict[str, list[str]] = {"v5": [], "v4": [], "jws": []}
    for payload, header in payloads:
        if isinstance(payload, str) and payload.startswith("<"):
            continue  # a description of a huge payload, not the payload
        for kind, toks in mint_all(as_bytes(payload), header).items():
            minted[kind].extend(toks)
    for kind, target in (("v5", "token-v5"), ("v4", "token-v4"), ("jws", "token-jws")):
        for tok in minted[kind]:
            add(target, tok)
            add("token-auto", tok)

    # Cookie / authorization pairs: the fixtures' requests, and minted tokens in every place the extractor looks.
    for cookie, auth in found["requests"]:
        add("cookie", (cookie or "").encode() + (b"\0" + auth.encode() if auth is not None else b""))
    picks = minted["v5"][:12] + minted["v4"][:6] + minted["jws"][:6] + found["tokens"][:6]
    for i, tok in enumerate(picks):
        name = SALTS[i % len(SALTS)]
        add("cookie", f"{name}={tok}")
        add("cookie", f"theme=dark; {name}=\"{tok}\"; other=1")
        add("cookie", f"\0Bearer {tok}")
        add("cookie", f"{name}=\0Bearer {urllib.parse.quote(tok[:20])}%2E{tok[21:]}")
        third = max(1, len(tok) // 3)
        chunks = [tok[:third], tok[third:2 * third], tok[2 * third:]]
        add("cookie", "; ".join(f"{name}.{j}={c}" for j, c in [(2, chunks[2]), (0, chunks[0]), (1, chunks[1])]))
        add("cookie", f"{name}=; {name}.0={tok}; {name}.x=junk; {name}.00001=y")
    for s in ["", "a", "a=b", "a; b=c", ";;=;", "=x", "authjs.session-token", "authjs.session-token=%zz",
              "authjs.session-token=%E9", "\0", "\0Bearer", "\0Bearer ", "\0Bearer  x", "\0bearer x", "\0Bearer %",
              "\0Bearer a b c", "authjs.session-token.99999=1; authjs.session-token.-1=2"]:
        add("cookie", s)

    # Claims objects for the header mapper, plus the JSON target's edge cases.
    for c in found["claims"] + CLAIMS_SEEDS:
        add("headers", jdump(c))
        add("json", jdump(c))
    for h in found["headers"]:
        add("json", jdump(h))
    for p, _ in found["payloads"]:
        if isinstance(p, str) and not p.startswith("<"):
            add("json", p)
            add("headers", p)
    for s in JSON_SEEDS:
        add("json", s)
        add("headers", s)

    for p in PATHS:
        add("path", p)

    # Client byte streams for the pipeline target (byte 0: the size of the pieces they arrive in). Tokens minted for
    # the other targets' secrets go in too: they reach decryption and fail there, as a forged session would.
    for s in PIPELINE_SEEDS:
        add("pipeline", s)
    # The forward target replaces each "@T" with a valid session token: the same streams, authenticated.
    for s in PIPELINE_SEEDS + FORWARD_SEEDS:
        add("forward", s.replace(b"Host: a\r\n", b"Host: a\r\nCookie: authjs.session-token=@T\r\n", 1))
    for s in FORWARD_SEEDS:
        add("forward", s)
    for i, tok in enumerate(minted["v5"][:2] + minted["jws"][:1]):
        add("pipeline", b"\x00GET /api HTTP/1.1\r\nHost: a\r\nCookie: " + f"{SALTS[1]}={tok}".encode() + b"\r\n\r\n")
        add("pipeline", bytes([i + 3]) + b"GET /_sidecar/auth HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + tok.encode()
            + b"\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n")

    for s in UPSTREAM_RESPONSE_SEEDS:
        add("upstream-response", s)
    # The client requests again at other read sizes, and the pipeline target's streams (same byte-0 convention).
    for i, s in enumerate(CLIENT_REQUEST_SEEDS):
        add("client-request", s)
        add("client-request", bytes([(i % 31) + 1]) + s[1:])
    for s in PIPELINE_SEEDS:
        if b"@W" not in s:
            add("client-request", bytes([s[0] & 31]) + s[1:])

    for s in CONFIG_SEEDS:
        add("config", s)
    for yaml in [ROOT / "deploy" / "sidecar.yaml", *sorted((ROOT / "deploy").rglob("*.yaml")), *sorted((ROOT / "deploy").rglob("*.yml"))]:
        if yaml.is_file():
            add("config", yaml.read_bytes())

    # Reproducers of past finds stay in every corpus as regression inputs.
    crashes = ROOT / "Tests" / "fuzz" / "crashes"
    if crashes.is_dir():
        for f in sorted(crashes.iterdir()):
            target = f.name.rsplit("-", 1)[0]
            if f.is_file() and target in seeds:
                add(target, f.read_bytes())

    out = Path(args.out)
    for target in args.targets:
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        written = skipped = 0
        unique = {}
        for s in seeds[target]:
            if len(s) > args.max_bytes:
                skipped += 1
                continue
            unique[hashlib.sha1(s).hexdigest()] = s
        for name, s in sorted(unique.items()):
            f = d / name
            if not f.exists():
                f.write_bytes(s)
                written += 1
        total = sum(1 for _ in d.iterdir())
        print(f"make-corpus: {target}: {len(unique)} seed(s), {written} new, {skipped} over {args.max_bytes} bytes skipped, {total} file(s) in {d}")
    if not HAVE_CRYPTO:
        print("make-corpus: python3 `cryptography` not installed: no minted tokens (fuzzing still works, starting from fixtures only)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
