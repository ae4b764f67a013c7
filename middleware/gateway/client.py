"""A small asyncio client of the gateway's `sync` subscription (graphql-transport-ws).

    async with SyncConnection.open("ws://host/graphql", authorization="Bearer ...") as conn:
        copy = LocalCopy()
        async for message in conn.sync("SELECT id, title FROM issues WHERE team_id = $1", [7]):
            copy.apply(message)

Used by the tests and the end-to-end benchmark; a browser uses the `graphql-ws`
npm package the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from pgsift.middleware.errors import GatewayError
from pgsift.middleware.gateway.json_encoding import one_shot_encoder

SUBPROTOCOL = "graphql-transport-ws"
SYNC_SUBSCRIPTION = """
subscription Sync($query: String!, $params: JSON, $cursor: String) {
  sync(query: $query, params: $params, cursor: $cursor) {
    changes { op key row }
    cursor
    upToDate
    mustRefetch
  }
}
"""


class OperationError(GatewayError):
    """The server answered a subscription with GraphQL errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e.get("message")) for e in errors))


class SyncConnection:
    """One websocket carrying any number of subscriptions."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        authorization: str | None = None,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> SyncConnection:
        ws = await websockets.connect(
            url, subprotocols=[SUBPROTOCOL], additional_headers=headers, max_size=None  # type: ignore[list-item]
        )
        init = dict(payload or {})
        if authorization is not None:
            init["authorization"] = authorization
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        reply = json.loads(await ws.recv())
        if reply.get("type") != "connection_ack":
            await ws.close()
            raise GatewayError(f"expected connection_ack, got {reply}")
        return cls(ws)

    async def __aenter__(self) -> SyncConnection:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    async def sync(
        self, query: str, params: list[Any] | None = None, cursor: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The `sync` messages (`changes`, `cursor`, `upToDate`, `mustRefetch`) of one query."""
        variables = {"query": query, "params": params, "cursor": cursor}
        async for data in self.subscribe(SYNC_SUBSCRIPTION, variables):
            yield data["sync"]

    async def subscribe(
        self, document: str, variables: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        op_id = str(next(self._ids))
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._queues[op_id] = queue
        await self.ws.send(
            json.dumps(
                {
                    "id": op_id,
                    "type": "subscribe",
                    "payload": {"query": document, "variables": variables},
                }
            )
        )
        finished = False
        try:
            while True:
                message = await queue.get()
                if message is None:
                    finished = True
                    return
                if message["type"] == "error":
                    finished = True
                    raise OperationError(message["payload"])
                payload = message["payload"]
                if payload.get("errors"):
                    raise OperationError(payload["errors"])
                yield payload["data"]
        finally:
            self._queues.pop(op_id, None)
            if not finished:
                with contextlib.suppress(Exception):
                    await self.ws.send(json.dumps({"id": op_id, "type": "complete"}))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                queue = self._queues.get(message.get("id", ""))
                if queue is None:
                    continue
                if kind == "complete":
                    queue.put_nowait(None)
                elif kind in ("next", "error"):
                    queue.put_nowait(message)
        finally:
            for queue in self._queues.values():
                queue.put_nowait(None)


# json.dumps(key, sort_keys=True)
_encode_key = one_shot_encoder(item_separator=", ", key_separator=": ", sort_keys=True)


def key_of(key: dict[str, Any]) -> str:
    """A row's key as one string (equal keys give equal strings: columns sorted)."""
    return _encode_key(key)


@dataclass
class LocalCopy:
    """A client's copy of one query's rows, applied by key."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursor: str | None = None
    up_to_date: bool = False
    must_refetch: bool = False

    def apply(self, message: dict[str, Any]) -> None:
        if message["mustRefetch"]:
            self.must_refetch = True
            return
        for change in message["changes"]:
            key = key_of(change["key"])
            if change["op"] == "DELETE":
                self.rows.pop(key, None)
            else:
                self.rows[key] = change["row"]
        if message["cursor"] is not None:
            self.cursor = message["cursor"]
        self.up_to_date = self.up_to_date or message["upToDate"]

    def reset(self) -> None:
        self.rows.clear()
        self.cursor, self.up_to_date, self.must_refetch = None, False, False
