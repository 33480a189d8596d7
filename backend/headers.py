"""Headers every response carries, whichever route, middleware or refusal made it.

`X-Content-Type-Options: nosniff` on all: a browser never guesses a type (an uploaded file, a JSON
error) into something it runs. `Cache-Control: no-store` on any response that sets a cookie and
says nothing of caching: those carry session and CSRF tokens, which no cache may keep. Routes whose
bodies carry tokens (sign-in, token creation, pages with forms) also set it themselves. A pure ASGI
middleware: it adds a header to the start message, nothing more.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if NOSNIFF[0] not in names:
                    headers.append(NOSNIFF)
                if b"set-cookie" in names and NO_STORE[0] not in names:
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
