"""HTTP request bodies of bounded size: past `gateway_max_body_bytes`, 413 and no more reading.

An ASGI middleware in front of every HTTP route of the gateway (`POST /v1/rows`,
GraphQL over HTTP, routes an app mounts), so that no endpoint holds more of a
body than the limit, whatever it does with it. A declared `Content-Length`
over the limit is answered at once, before a byte of the body is read; a body
without one (chunked) is counted as it arrives, and the request is refused at
the chunk that passes the limit. Either way the connection is closed after
the answer: the rest of the body is never read.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgsift.middleware.errors import ConfigError, GatewayError


class BodyTooLarge(GatewayError):
    """A request body passed the limit while the endpoint was reading it."""


class BodyLimit:
    """ASGI middleware: HTTP bodies of at most `max_bytes`, else a 413 naming the setting."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ConfigError(f"gateway_max_body_bytes must be >= 1, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        answered = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self._message())
            return message

        async def watched(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if answered:  # too late for a status: let the server end the response
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"error": self._message()}, status_code=413, headers={"Connection": "close"}
        )
        await response(scope, receive, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (gateway_max_body_bytes)"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
