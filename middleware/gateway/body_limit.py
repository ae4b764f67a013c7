"""HTTP request bodies of bounded size: past `gateway_max_body_bytes`, 413 and no more reading.

An ASGI middleware in front of every HTTP route of the gateway (`POST /v1/rows`,
`POST /v1/mutate`, GraphQL over HTTP, routes an app mounts), so that no endpoint
holds more of a body than the limit, whatever it does with it. A declared
`Content-Length` over the limit is refused before the endpoint reads a byte of
the body; a body without one (chunked) is counted as it arrives, and the
request is refused at the chunk that passes the limit. Either way the
connection is closed after the answer.

Before answering, what the client is still sending of a refused body is read
and dropped, within `DRAIN_BYTES` and `DRAIN_S`: closing a connection with
unread data makes the kernel reset it, and a client that writes its whole body
before reading (most do) would get that reset instead of the 413. A bigger or
slower body is not read any further: its sender gets the reset.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgsift.middleware.errors import ConfigError, GatewayError

DRAIN_BYTES = 4 * 2**20  # most of a refused body read (and dropped) to answer it cleanly
DRAIN_S = 10.0  # longest time spent doing so


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
            await self._refuse(scope, receive, send, remaining=declared)
            return
        received = 0
        more_body = True
        answered = False

        async def counted() -> Message:
            nonlocal received, more_body
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more_body = message.get("more_body", False)
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
            # Past the limit without a declared length: how much more is coming is unknown.
            await self._refuse(scope, receive, send, remaining=None if more_body else 0)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, *, remaining: int | None
    ) -> None:
        """Drop what is left of the body (`remaining` bytes; None: unknown), then a 413."""
        await _drain(receive, remaining)
        response = JSONResponse(
            {"error": self._message()}, status_code=413, headers={"Connection": "close"}
        )
        await response(scope, receive, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (gateway_max_body_bytes)"


async def _drain(receive: Receive, remaining: int | None) -> None:
    """Read and drop the rest of a refused body, within DRAIN_BYTES and DRAIN_S."""
    if remaining is not None and not 0 < remaining <= DRAIN_BYTES:
        return
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            while dropped <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                dropped += len(message.get("body", b""))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
