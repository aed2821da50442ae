"""FastAPI dependencies that turn authjs-sidecar identity headers into a typed User.

The sidecar verifies the Auth.js session token and forwards the request with:

    X-Auth-Sub      subject (user id)            -- always present when authenticated
    X-Auth-Email    email claim                  -- optional
    X-Auth-Name     name claim                   -- optional
    X-Auth-Picture  picture claim                -- optional
    X-Auth-Claims   base64url (no padding) of the full claims JSON

Header values containing bytes outside printable ASCII (0x20-0x7E), or that
themselves start with ``utf-8''``, are sent as ``utf-8''`` + RFC 3986
percent-encoding of the UTF-8 bytes; :func:`decode_header_value` undoes that.

The sidecar strips every client-supplied ``X-Auth-*`` header, so these headers
can be trusted ONLY if this service is reachable exclusively through the
sidecar (bind to 127.0.0.1 in a pod, or keep the port unpublished in compose).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any, Callable, Optional
from urllib.parse import quote, unquote

from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

__all__ = [
    "User",
    "current_user",
    "optional_user",
    "require_role",
    "CurrentUser",
    "OptionalUser",
    "decode_header_value",
    "encode_header_value",
    "decode_claims",
    "encode_claims",
]

UTF8_PREFIX = "utf-8''"

HEADER_SUB = "x-auth-sub"
HEADER_EMAIL = "x-auth-email"
HEADER_NAME = "x-auth-name"
HEADER_PICTURE = "x-auth-picture"
HEADER_CLAIMS = "x-auth-claims"


class User(BaseModel):
    """The authenticated user as asserted by the sidecar."""

    sub: str
    email: Optional[str] = None
    name: Optional[str] = None
    picture: Optional[str] = None
    claims: dict[str, Any] = Field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        """``roles`` claim as a list (accepts a list, a single string, or a
        space/comma separated string)."""
        raw = self.claims.get("roles", self.claims.get("role"))
        if isinstance(raw, str):
            # ASCII space and comma only, as the sidecar's `contains` rules and the Swift helper split it (str.split()
            # also splits on tabs and non-breaking spaces: "viewer\u00a0admin" would hold "admin").
            return [r for r in re.split(r"[ ,]+", raw) if r]
        if isinstance(raw, (list, tuple)):
            return [r for r in raw if isinstance(r, str)]  # as the Swift helper: non-strings are no role names
        return []

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def email_verified(self) -> bool:
        return self.claims.get("email_verified") is True


_EXTENDED = re.compile(r"[A-Za-z0-9!#$&+^_`{}~-]+'[A-Za-z0-9-]*'")


def _is_plain(value: str) -> bool:
    """What the sidecar sends as is: printable ASCII, no space at either end, and nothing an RFC 8187 decoder would
    read as charset'lang'value (in any case)."""
    return (all(0x20 <= ord(c) <= 0x7E for c in value) and not value.startswith(" ") and not value.endswith(" ")
            and _EXTENDED.match(value) is None)


def encode_header_value(value: str) -> str:
    """Encode exactly like the sidecar (useful in tests)."""
    if _is_plain(value):
        return value
    # quote() with safe="" keeps only RFC 3986 unreserved chars: A-Z a-z 0-9 - . _ ~
    return UTF8_PREFIX + quote(value.encode("utf-8"), safe="")


def decode_header_value(value: str) -> str:
    """Undo the sidecar's ``utf-8''`` percent-encoding; plain values pass through."""
    if value.startswith(UTF8_PREFIX):
        return unquote(value[len(UTF8_PREFIX):], encoding="utf-8", errors="strict")
    return value


def encode_claims(claims: dict[str, Any]) -> str:
    raw = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_claims(value: str) -> dict[str, Any]:
    """Decode X-Auth-Claims: base64url without padding of a JSON object."""
    value = value.strip()
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        claims = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError(f"malformed X-Auth-Claims: {exc}") from exc
    if not isinstance(claims, dict):
        raise ValueError("malformed X-Auth-Claims: not a JSON object")
    return claims


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": 'Bearer realm="authjs-sidecar"'},
    )


def _user_from_request(request: Request) -> Optional[User]:
    headers = request.headers
    sub_raw = headers.get(HEADER_SUB)
    if sub_raw is None or sub_raw == "":
        return None
    try:
        claims = decode_claims(headers[HEADER_CLAIMS]) if HEADER_CLAIMS in headers else {}
        fields: dict[str, Optional[str]] = {}
        for header, key in ((HEADER_EMAIL, "email"), (HEADER_NAME, "name"), (HEADER_PICTURE, "picture")):
            raw = headers.get(header)
            if raw is not None:
                fields[key] = decode_header_value(raw)
            elif isinstance(claims.get(key), str):
                fields[key] = claims[key]
        return User(sub=decode_header_value(sub_raw), claims=claims, **fields)
    except ValueError as exc:  # includes UnicodeDecodeError and pydantic.ValidationError
        raise _unauthorized(f"invalid identity headers: {exc}") from exc


def current_user(request: Request) -> User:
    """Dependency: the authenticated user, or 401 if the sidecar sent no identity."""
    user = _user_from_request(request)
    if user is None:
        raise _unauthorized("not authenticated")
    return user


def optional_user(request: Request) -> Optional[User]:
    """Dependency: the user if the sidecar authenticated the request, else None
    (for routes configured with ``mode: optional`` or ``public`` in the sidecar)."""
    return _user_from_request(request)


CurrentUser = Annotated[User, Depends(current_user)]
OptionalUser = Annotated[Optional[User], Depends(optional_user)]


def require_role(role: str) -> Callable[[User], User]:
    """Dependency factory: 401 when unauthenticated, 403 when the role is missing."""

    def dependency(user: CurrentUser) -> User:
        if not user.has_role(role):
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"role {role!r} required")
        return user

    return dependency
