"""One socket write per websocket connection per event-loop turn.

uvicorn's websocket protocol writes every frame to its transport at once: a
connection whose subscriptions all receive a message in the same turn (the
tailer routes a read of many transactions, their operations wake together)
costs one `send` system call per frame (8 % of the gateway's CPU in a profile
of `bench/e2e/run.py` at 2,000 commits/s).
`CoalescedTransport` keeps the frames written during a turn and writes them
joined, once, from a callback scheduled with `call_soon` (after every task
woken in this turn has run). Order is kept; closing writes what is pending
first; aborting drops it, as aborting a transport does.

`CoalescedWebSocketsProtocol` is uvicorn's websockets protocol on such a
transport (`uvicorn.Config(ws=...)`); it works under asyncio's loop and uvloop.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class CoalescedTransport:
    """`transport` with the writes of one event-loop turn joined into one write."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write what is pending now (the scheduled callback; closing calls it too)."""
        self._scheduled = False
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def pending_bytes(self) -> int:
        return sum(len(data) for data in self._pending)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self.pending_bytes()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        # Everything else (pause_reading, set_protocol, ...) is the transport's own.
        return getattr(self._transport, name)


class CoalescedWebSocketsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol writing through a `CoalescedTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: not checked.
        coalesced: Any = CoalescedTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(coalesced)
