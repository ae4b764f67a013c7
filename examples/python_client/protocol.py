"""The client side of graphql-transport-ws, the protocol of the `graphql-ws` library.

One websocket carries many subscriptions, each under its own operation id:

    client                         server
    connection_init {payload}  ->
                               <-  connection_ack
    subscribe {id, payload}    ->
                               <-  next {id, payload: {data, errors?}}   (many)
                               <-  error {id, payload: [errors]}  |  complete {id}
    complete {id}              ->  (the client stops one early)
    ping / pong either way
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

SUBPROTOCOL = Subprotocol("graphql-transport-ws")


class ConnectionInit(TypedDict):
    type: Literal["connection_init"]
    payload: NotRequired[dict[str, Any]]


class Subscribe(TypedDict):
    id: str
    type: Literal["subscribe"]
    payload: dict[str, Any]


class Complete(TypedDict):
    id: str
    type: Literal["complete"]


class Pong(TypedDict):
    type: Literal["pong"]


class ProtocolError(Exception):
    """The server broke the protocol, refused us, or closed the connection."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class OperationError(Exception):
    """The server answered one operation with GraphQL errors (the connection stays open)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error.get("message", error)) for error in errors))
        self.errors = errors


class _NextErrors(OperationError):
    """Errors inside a `next`: the server may keep the operation open."""


@dataclass
class _Operation:
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = field(
        default_factory=asyncio.Queue
    )


class GraphQLWebSocket:
    """An open graphql-transport-ws connection: `async with GraphQLWebSocket(url, init) as ws`."""

    def __init__(
        self,
        url: str,
        init_payload: Mapping[str, Any] | None = None,
        *,
        ack_timeout: float = 10.0,
        max_size: int | None = 16 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.init_payload = dict(init_payload or {})
        self.ack_timeout = ack_timeout
        self.max_size = max_size
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._operations: dict[str, _Operation] = {}
        self._ids = itertools.count(1)
        self._closed: BaseException | None = None
        # What the server said with `connection_ack` (pgsift: a bound client's ledger).
        self.ack_payload: dict[str, Any] = {}

    async def __aenter__(self) -> GraphQLWebSocket:
        self._ws = await connect(
            self.url, subprotocols=[SUBPROTOCOL], max_size=self.max_size, proxy=None
        )
        try:
            if self._ws.subprotocol != SUBPROTOCOL:
                raise ProtocolError(f"server chose subprotocol {self._ws.subprotocol!r}")
            init: ConnectionInit = {"type": "connection_init", "payload": self.init_payload}
            await self._ws.send(json.dumps(init))
            async with asyncio.timeout(self.ack_timeout):
                reply = json.loads(await self._ws.recv())
            if reply.get("type") != "connection_ack":
                raise ProtocolError(f"expected connection_ack, got {reply!r}")
            payload = reply.get("payload")
            self.ack_payload = payload if isinstance(payload, dict) else {}
        except ConnectionClosed as exc:
            await self._ws.close()
            raise _closed_error(exc) from exc
        except BaseException:
            await self._ws.close()
            raise
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def subscribe(
        self, query: str, variables: Mapping[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the `data` of each `next` until the server completes the operation.

        Raises OperationError for GraphQL errors, ProtocolError when the connection
        goes away. Leaving the loop early tells the server to stop.
        """
        if self._ws is None:
            raise ProtocolError("not connected")
        if self._closed is not None:
            raise self._closed
        op_id = str(next(self._ids))
        operation = self._operations[op_id] = _Operation()
        message: Subscribe = {
            "id": op_id,
            "type": "subscribe",
            "payload": {"query": query, "variables": dict(variables or {})},
        }
        completed = False
        try:
            await self._ws.send(json.dumps(message))
            while True:
                item = await operation.queue.get()
                if item is None:
                    completed = True
                    return
                if isinstance(item, BaseException):
                    # After a closed connection or an `error` message the
                    # operation is over on the server's side already.
                    completed = not isinstance(item, _NextErrors)
                    raise item
                yield item
        finally:
            self._operations.pop(op_id, None)
            if not completed and self._closed is None:
                stop: Complete = {"id": op_id, "type": "complete"}
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(json.dumps(stop))

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ProtocolError(f"not a JSON object: {raw!r}")
                if message.get("type") == "ping":
                    pong: Pong = {"type": "pong"}
                    await self._ws.send(json.dumps(pong))
                else:
                    self._dispatch(message)
            self._closed = _closed_error(None, self._ws.close_code, self._ws.close_reason)
        except ConnectionClosed as exc:
            self._closed = _closed_error(exc)
        except (ValueError, ProtocolError) as exc:
            self._closed = exc if isinstance(exc, ProtocolError) else ProtocolError(str(exc))
            await self._ws.close(4400, "invalid message")
        for operation in self._operations.values():
            operation.queue.put_nowait(self._closed)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        operation = self._operations.get(str(message.get("id")))
        if kind in ("pong", "connection_ack"):
            return
        if kind not in ("next", "error", "complete"):
            raise ProtocolError(f"unexpected message {message!r}")
        if operation is None:
            return  # an operation we already stopped; its last messages cross ours
        if kind == "next":
            payload = cast(dict[str, Any], message.get("payload") or {})
            if payload.get("errors"):
                operation.queue.put_nowait(_NextErrors(payload["errors"]))
            else:
                operation.queue.put_nowait(cast(dict[str, Any], payload.get("data") or {}))
        elif kind == "error":
            operation.queue.put_nowait(OperationError(list(message.get("payload") or [])))
        else:
            operation.queue.put_nowait(None)


def _closed_error(
    exc: ConnectionClosed | None, code: int | None = None, reason: str | None = None
) -> ProtocolError:
    if exc is not None and exc.rcvd is not None:
        code, reason = exc.rcvd.code, exc.rcvd.reason
    return ProtocolError(f"connection closed ({code}: {reason or 'no reason'})", code=code)
