"""What one shape's subscribers receive for one change: the routed `Event`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EventOp = Literal["insert", "update", "delete", "truncate"]


@dataclass(frozen=True, slots=True)
class Event:
    """One change as seen through one shape.

    `insert` carries a row that entered the shape (a new row or a move-in),
    `update` a row that stayed in it, `delete` only the key of a row that left
    it (a delete or a move-out), `truncate` neither. Rows are projected to the
    shape's columns; `key` maps the primary-key columns to their values.
    Clients apply events by key, so an `insert` of a key they already hold is
    an upsert and a `delete` of a key they do not hold is a no-op.
    """

    op: EventOp
    key: dict[str, Any] | None
    row: dict[str, Any] | None


TRUNCATE = Event("truncate", None, None)
