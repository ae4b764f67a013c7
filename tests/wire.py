"""Rows in their wire form (by column type), for tests that compare clients with Postgres."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg import Column

from pgsift.middleware.capture.changes import BUILTIN_TYPES
from pgsift.subscriptions.wire import RowWire


def described(description: Sequence[Column] | None) -> RowWire:
    """The wire encoders of a psycopg result's columns (enums and other unknowns: text)."""
    columns = list(description or ())
    return RowWire(
        [c.name for c in columns], [BUILTIN_TYPES.get(c.type_code, "text") for c in columns]
    )


def wire_rows(rows: Iterable[Mapping[str, Any]], types: Mapping[str, str]) -> dict[Any, Any]:
    """Each row in its wire form, by its wire `id`; `types` names every column's type."""
    wire = RowWire(tuple(types), tuple(types.values()))
    encoded = (wire.mapping(row) for row in rows)
    return {row["id"]: row for row in encoded}
