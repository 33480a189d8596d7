"""Admission control: a bound on the requests one API process works on at once.

Past the machine's capacity, every request admitted only lengthens the queue of those before it:
latency grows until clients time out and retry, and the server keeps working for clients that have
gone. So one request over the bound is refused at once — 503 with `Retry-After`, before any body
is read, any thread or connection taken — and the client comes back later (the annotation page
does, with the same Idempotency-Key). The count is per process: uvicorn's N processes admit N
times the bound. A pure ASGI middleware, so every route gets it and it costs one integer compare.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

BUSY_MESSAGE = "The server is too busy right now; try again in a moment."


class InFlightLimit:
    """Answer 503 + Retry-After to any HTTP request that would make more than `limit` in flight."""

    def __init__(self, app: ASGIApp, limit: int, retry_after_seconds: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0  # one event loop per process: no lock needed
        self.refused = busy_response(retry_after_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            start, body = self.refused
            await send(start)
            await send(body)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def busy_response(retry_after_seconds: int) -> tuple[dict[str, object], dict[str, object]]:
    """The two ASGI messages of a 503 "busy" answer (built once: refusing must cost next to nothing)."""
    body = json.dumps({"detail": BUSY_MESSAGE}).encode()
    start = {
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after_seconds).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}
