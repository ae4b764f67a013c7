"""What a sync subscription sends, independent of the GraphQL library serving it.

`SyncMessage` mirrors the GraphQL contract (`changes`, `cursor`, `upToDate`,
`mustRefetch`, `confirmed`); keys and rows are in their wire form (`pgsift.subscriptions.wire`:
by column type, lossless). `MessageBuilder` cuts a stream of changes into messages of bounded
approximate size, so a big snapshot or transaction never becomes one huge frame.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pgsift.middleware.mutations.confirmed import Confirmed
from pgsift.subscriptions.wire import RowWire

WireOp = Literal["INSERT", "UPDATE", "DELETE"]
# Per-change framing that json.dumps of key and row does not count ({"op":..} etc.).
CHANGE_OVERHEAD_BYTES = 40


@dataclass(frozen=True, slots=True)
class WireChange:
    """One row change as the client sees it; `row` is None for DELETE."""

    op: WireOp
    key: dict[str, Any]
    row: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """One `sync` message; `types` (column -> type name) only on a subscription's first;
    `confirmed`: the connection's client's mutations that ran in the transaction that
    ends at `cursor` (or, after a snapshot's rows, that the snapshot holds)."""

    changes: tuple[WireChange, ...]
    cursor: str | None
    up_to_date: bool
    must_refetch: bool = False
    types: Mapping[str, str] | None = None
    confirmed: Confirmed | None = None
    # Its `next` payloads by selection (`sync_plan.MessageSerializer.key`): a message
    # shared by the subscriptions of one shape is encoded once per selection.
    payloads: dict[Hashable, str] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )


REFETCH = SyncMessage(changes=(), cursor=None, up_to_date=False, must_refetch=True)


def wire_change(
    op: WireOp, key: Mapping[str, Any], row: Mapping[str, Any] | None, wire: RowWire
) -> WireChange:
    """A WireChange with Python values (as psycopg returns them) in their wire form;
    `wire` is the shape's (`Shape.wire`: its columns' types)."""
    return WireChange(
        op=op, key=wire.mapping(key), row=None if row is None else wire.mapping(row)
    )


def with_types(
    messages: AsyncIterator[SyncMessage], types: Mapping[str, str]
) -> AsyncIterator[SyncMessage]:
    """`messages` with the column types on the first one, so that a client knows how
    to decode the wire form of every value it will get (`docs/wire-values.md`).
    Closing it (`aclose`) stops the session (snapshot, inbox) with its consumer."""
    return _Typed(messages, types)


class _Typed:
    """`with_types`: an object, not an async generator, because one lives as long as its
    subscription and a generator's frame (plus the event loop's weak reference to it)
    weighs several times more."""

    __slots__ = ("_messages", "_types")

    def __init__(self, messages: AsyncIterator[SyncMessage], types: Mapping[str, str]) -> None:
        self._messages = messages
        self._types: Mapping[str, str] | None = types

    def __aiter__(self) -> _Typed:
        return self

    async def __anext__(self) -> SyncMessage:
        message = await self._messages.__anext__()
        types, self._types = self._types, None
        return message if types is None else replace(message, types=types)

    async def aclose(self) -> None:
        close = getattr(self._messages, "aclose", None)
        if close is not None:
            await close()


def change_size(change: WireChange) -> int:
    """Approximate bytes of `change` in a JSON frame."""
    size = CHANGE_OVERHEAD_BYTES + _json_size(change.key)
    if change.row is not None:
        size += _json_size(change.row)
    return size


def _json_size(values: Mapping[str, Any]) -> int:
    """Bytes of `values` as a JSON object, near enough (ASCII text counted without its
    escapes); summed per value because a `json.dumps` per row cost more than the
    rest of a 1,000-row move's path in the gateway."""
    size = 2
    for name, value in values.items():
        size += len(name) + 4
        if isinstance(value, str):
            size += len(value) + 2 if value.isascii() else len(json.dumps(value))
        elif value is None or isinstance(value, bool):
            size += 5
        elif isinstance(value, int | float):
            size += len(repr(value))
        else:  # lists, objects (json, arrays)
            size += len(json.dumps(value, default=str))
    return size


def batched(
    changes: list[WireChange] | tuple[WireChange, ...],
    *,
    max_bytes: int,
    cursor: str | None,
    up_to_date: bool,
    confirmed: Confirmed | None = None,
) -> Iterator[SyncMessage]:
    """Messages of at most ~max_bytes each (at least one change each); only the last
    one carries `cursor` and `confirmed`, because only it ends at the transaction
    boundary."""
    if len(changes) <= 1:  # the common live case: nothing to cut, nothing to measure
        yield SyncMessage(tuple(changes), cursor, up_to_date, confirmed=confirmed)
        return
    start, size = 0, 0
    for index, change in enumerate(changes):
        grown = size + change_size(change)
        if grown > max_bytes and index > start:
            yield SyncMessage(tuple(changes[start:index]), None, up_to_date)
            start, grown = index, change_size(change)
        size = grown
    yield SyncMessage(tuple(changes[start:]), cursor, up_to_date, confirmed=confirmed)


async def insert_messages(
    batches: AsyncIterator[list[dict[str, Any]]], primary_key: tuple[str, ...], max_bytes: int
) -> AsyncGenerator[SyncMessage, None]:
    """A snapshot's rows (batches of rows in wire form) as INSERT messages of at most
    ~max_bytes, without a cursor: a snapshot's position is told by the message after."""
    batch: list[WireChange] = []
    size = 0
    async for rows in batches:
        for row in rows:
            change = WireChange("INSERT", {k: row[k] for k in primary_key}, row)
            size += change_size(change)
            batch.append(change)
            if size >= max_bytes:
                yield SyncMessage(tuple(batch), None, up_to_date=False)
                batch, size = [], 0
    if batch:
        yield SyncMessage(tuple(batch), None, up_to_date=False)
