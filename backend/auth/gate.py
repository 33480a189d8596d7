"""Credentials before bodies: an API request with a body but no credential is refused unread.

FastAPI reads and parses a body before it runs an endpoint's dependencies, so without this an
anonymous client could make the server take in up to AQPL_MAX_UPLOAD_BYTES (and parse it as JSON
or multipart) only to answer 401. This pure ASGI middleware answers that 401 from the headers alone,
before a byte of the body is received, and closes the connection (the unread body stays on the
socket). It checks that a credential is present, not that it is valid: that takes the database,
and stays with the endpoints' dependencies (the upload endpoint checks it before reading its body).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.deps import NO_TOKEN, presented_token

# The public API routes that take a body; every other API request with a body needs a credential.
PUBLIC_WITH_BODY = frozenset({("POST", "/auth/login")})


class CredentialsBeforeBody:
    """Answer 401 to a request under `prefix` that carries a body and neither a bearer token nor a
    session cookie, without reading the body."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._refuses(scope):
            await _unauthorized(send)
            return
        await self.app(scope, receive, send)

    def _refuses(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if not path.startswith(self.prefix + "/") or not _has_body(scope):
            return False
        if (scope["method"], path.removeprefix(self.prefix)) in PUBLIC_WITH_BODY:
            return False
        return presented_token(Request(scope)) is None


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


async def _unauthorized(send: Send) -> None:
    body = json.dumps({"detail": NO_TOKEN}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
                # The unread body stays on the socket: the client must open a new connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
