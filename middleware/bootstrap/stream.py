"""The streamed response of `GET /v1/bootstrap`: a `RowSource`'s body, never outliving its client.

Starlette's `StreamingResponse` waits on a client that stopped reading for as
long as the socket stays open, and when the client goes away it cancels the
body where it stands, leaving the source to be closed later, if at all: a live
source's snapshot transaction stays open ("idle in transaction") and its
connection is lost to every other client. `SourceResponse` instead

* gives every write at most `write_timeout_s` (0: no limit) - a client that
  takes no bytes for that long is dropped;
* watches for the client's disconnect while it streams, and stops at once;
* then, on every path (complete, write timeout, disconnect, error, the server
  cancelling the request), ends the body and closes the source in a task of its
  own that no cancellation reaches - the snapshot transaction ends and its
  connection goes back to the pool, a dump's lease is released - and calls
  `on_end` with how it ended.

A response cut short leaves the HTTP response incomplete, on purpose: the
server closes the connection (uvicorn logs one line, "ASGI callable returned
without completing response"), and the client sees no end line, so it knows
its copy is incomplete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from pgsift.middleware.bootstrap.sources import RowSource
from pgsift.middleware.dumps.encoding import Encoding

log = logging.getLogger(__name__)

Outcome = Literal["complete", "write_timeout", "disconnect", "error"]

# Clean-ups running apart from the request that started them (kept referenced until done).
_closing: set[asyncio.Task[None]] = set()


class SourceResponse(Response):
    """`source`'s NDJSON body in `encoding`; see the module docstring."""

    def __init__(
        self,
        source: RowSource,
        encoding: Encoding,
        *,
        media_type: str,
        headers: Mapping[str, str],
        write_timeout_s: float,
        on_end: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        self.source = source
        self.encoding = encoding
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        self.write_timeout_s = write_timeout_s
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.source.body(self.encoding)
        outcome: Outcome = "error"
        try:
            outcome = await self._stream(body, receive, send)
        finally:
            await _apart(self._end(body, outcome))

    async def _stream(self, body: AsyncIterator[bytes], receive: Receive, send: Send) -> Outcome:
        streaming = asyncio.ensure_future(self._send_all(body, send))
        watching = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            await asyncio.wait((streaming, watching))
        if not streaming.cancelled() and streaming.exception() is None:
            return "complete"
        if watching.done() and not watching.cancelled():
            return "disconnect"
        error = streaming.exception() if not streaming.cancelled() else None
        if isinstance(error, TimeoutError):
            return "write_timeout"
        if isinstance(error, OSError):
            return "disconnect"
        if error is not None:
            log.error("a bootstrap response failed mid-stream", exc_info=error)
        return "error"

    async def _send_all(self, body: AsyncIterator[bytes], send: Send) -> None:
        limit = self.write_timeout_s or None
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        async for chunk in body:
            # Only the client's side is timed: producing the chunk is Postgres's
            # (statement_timeout) or the dump store's.
            async with asyncio.timeout(limit):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        async with asyncio.timeout(limit):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _end(self, body: AsyncIterator[bytes], outcome: Outcome) -> None:
        try:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        except Exception:
            log.exception("ending a bootstrap body failed")
        finally:
            try:
                await self.source.close()
            finally:
                await self.on_end(outcome)


async def _disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the request has no body to read: a GET)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _apart(work: Awaitable[None]) -> None:
    """Run `work` to its end even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    await asyncio.shield(task)
