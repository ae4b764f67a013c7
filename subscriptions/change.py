"""A row change as it travels through the feed: the unit that routing classifies."""

from __future__ import annotations

from typing import Any, Literal

from pgsift.subscriptions.records import record

Op = Literal["insert", "update", "delete", "truncate"]
Row = dict[str, Any]


@record
class Change:
    """One row-level change of a committed transaction.

    `table` is schema-qualified (`public.issues`). Values in `key`, `new` and
    `old` are Python values as psycopg 3 returns them for the column type.
    `old` is the full old row when the table has REPLICA IDENTITY FULL, else
    None (or only the key columns). TRUNCATE has no key and no rows.
    """

    table: str
    op: Op
    key: Row | None
    new: Row | None
    old: Row | None
