"""A limit on request bodies: one pure ASGI middleware, so every route (uploads included) gets it.

A declared Content-Length over the limit is refused before any byte is read. A body sent without
one (chunked) is counted as it streams in; the read that crosses the limit raises `BodyTooLarge`,
an HTTPException that FastAPI re-raises untouched while parsing a body, so the client gets 413
with a message instead of a 400 or a 500.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large_message(max_bytes: int) -> str:
    return f"the request body is larger than the limit of {max_bytes} bytes (AQPL_MAX_UPLOAD_BYTES)"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body crosses the limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(max_bytes))


class BodySizeLimit:
    """Refuse request bodies over `max_bytes`: 413 by Content-Length, or once the streamed bytes exceed it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _reject(send, 400, "the Content-Length header is not a non-negative integer")
            return
        if declared is not None and declared > self.max_bytes:
            await _reject(send, 413, _too_large_message(self.max_bytes))
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as error:
            # Raised where no handler turned it into a response (e.g. a raw `request.stream()` reader).
            if response_started:
                raise
            await _reject(send, 413, str(error.detail))


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None when absent, -1 when malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else -1
    return None


async def _reject(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread body stays on the socket: the client must open a new connection.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
