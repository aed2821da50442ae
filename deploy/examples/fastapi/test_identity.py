"""Tests for the authjs_identity dependencies (run: pytest deploy/examples/fastapi)."""

from __future__ import annotations

import base64
import json
import os
import sys

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from app import app  # noqa: E402
from authjs_identity import (  # noqa: E402
    decode_claims,
    decode_header_value,
    encode_claims,
    encode_header_value,
)

client = TestClient(app)


def b64url(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_me_with_identity_headers():
    claims = {"sub": "user-1", "email": "ada@example.com", "name": "Ada", "exp": 2000000000}
    r = client.get(
        "/me",
        headers={
            "X-Auth-Sub": "user-1",
            "X-Auth-Email": "ada@example.com",
            "X-Auth-Name": "Ada",
            "X-Auth-Picture": "https://example.com/a.png",
            "X-Auth-Claims": b64url(claims),
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "sub": "user-1",
        "email": "ada@example.com",
        "name": "Ada",
        "picture": "https://example.com/a.png",
        "claims": claims,
    }


def test_me_without_identity_is_401():
    r = client.get("/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_empty_sub_is_401():
    assert client.get("/me", headers={"X-Auth-Sub": ""}).status_code == 401


def test_optional_user():
    assert client.get("/hello").json() == {"message": "Hello, anonymous!"}
    assert client.get("/hello", headers={"X-Auth-Sub": "u2"}).json() == {"message": "Hello, u2!"}
    assert client.get("/hello", headers={"X-Auth-Sub": "u2", "X-Auth-Name": "Bob"}).json() == {
        "message": "Hello, Bob!"
    }


@pytest.mark.parametrize("name", ["Zoë Ångström", "山田 太郎", "Ünïcödé 🎉", "tab\there"])
def test_utf8_encoded_name(name):
    encoded = encode_header_value(name)
    assert encoded.startswith("utf-8''")
    assert encoded.isascii()
    r = client.get("/me", headers={"X-Auth-Sub": "u3", "X-Auth-Name": encoded})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == name


def test_known_encoding_vector():
    # "Zoë" -> UTF-8 5a 6f c3 ab; unreserved characters stay literal.
    assert encode_header_value("Zoë a-b_c.d~e") == "utf-8''Zo%C3%AB%20a-b_c.d~e"
    assert decode_header_value("utf-8''Zo%C3%AB%20a-b_c.d~e") == "Zoë a-b_c.d~e"


def test_literal_prefix_value_round_trips():
    # A value that itself starts with utf-8'' is encoded too, so decoding is unambiguous.
    value = "utf-8''not-really-encoded"
    encoded = encode_header_value(value)
    assert encoded == "utf-8''utf-8%27%27not-really-encoded"
    r = client.get("/me", headers={"X-Auth-Sub": "u4", "X-Auth-Name": encoded})
    assert r.json()["name"] == value


def test_plain_ascii_is_not_encoded():
    assert encode_header_value("Ada Lovelace") == "Ada Lovelace"
    assert decode_header_value("Ada Lovelace") == "Ada Lovelace"
    # '+' is NOT a space in RFC 3986 percent-encoding
    assert decode_header_value("utf-8''a+b%2B") == "a+b+"


def test_utf8_sub():
    r = client.get("/me", headers={"X-Auth-Sub": encode_header_value("ユーザー")})
    assert r.json()["sub"] == "ユーザー"


def test_invalid_percent_encoding_is_401():
    r = client.get("/me", headers={"X-Auth-Sub": "u5", "X-Auth-Name": "utf-8''%FF%FE"})
    assert r.status_code == 401


def test_claims_decoding_unicode_and_nested():
    claims = {"sub": "u6", "name": "Zoë", "org": {"id": 7, "tags": ["a", "b"]}, "email_verified": True}
    value = encode_claims(claims)
    assert "=" not in value and "+" not in value and "/" not in value
    assert decode_claims(value) == claims
    r = client.get("/me", headers={"X-Auth-Sub": "u6", "X-Auth-Claims": value})
    body = r.json()
    assert body["claims"] == claims
    # email/name fall back to the claims when the dedicated headers are absent
    assert body["name"] == "Zoë"


@pytest.mark.parametrize("pad", range(4))
def test_claims_any_length_without_padding(pad):
    claims = {"sub": "x" * pad}
    assert decode_claims(encode_claims(claims)) == claims


@pytest.mark.parametrize("bad", ["!!!", b64url([1, 2, 3]), base64.urlsafe_b64encode(b"not json").decode()])
def test_malformed_claims_is_401(bad):
    r = client.get("/me", headers={"X-Auth-Sub": "u7", "X-Auth-Claims": bad})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "roles, expected",
    [(["admin", "dev"], 200), (["dev"], 403), ("admin editor", 200), ("editor,admin", 200), (None, 403),
     # only ASCII space and comma separate (as the sidecar and the Swift helper read it); non-strings are no roles
     ("viewer\tadmin", 403), ("viewer\u00a0admin", 403), ([None, 1, "dev"], 403), ("admin", 200)],
)
def test_roles(roles, expected):
    claims = {"sub": "u8"} if roles is None else {"sub": "u8", "roles": roles}
    r = client.get("/admin", headers={"X-Auth-Sub": "u8", "X-Auth-Claims": b64url(claims)})
    assert r.status_code == expected, r.text
    if expected == 200:
        assert "admin" in r.json()["roles"]


def test_admin_requires_authentication():
    assert client.get("/admin").status_code == 401


@pytest.mark.parametrize("value, sent", [
    # the same vectors as the sidecar's own encoder tests (Tests/SidecarCoreTests/PolicyTests.swift encodeCases)
    ("plain ascii ~!", "plain ascii ~!"), ("100%", "100%"), (" Ada ", "utf-8''%20Ada%20"),
    ("UTF-8''x", "utf-8''UTF-8%27%27x"), ("utf-8'en'x", "utf-8''utf-8%27en%27x"),
    ("ISO-8859-1''%41dmin", "utf-8''ISO-8859-1%27%27%2541dmin"), ("O'Brien", "O'Brien"), ("it's 'quoted'", "it's 'quoted'"),
])
def test_encoder_matches_the_sidecar(value, sent):
    assert encode_header_value(value) == sent
    assert decode_header_value(sent) == value
