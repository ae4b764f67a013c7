"""Make a psycopg 3 connection return exactly the values capture puts in the feed.

Snapshots, batch loads and dumps read rows with psycopg 3; capture decodes
pgoutput text with `pgsift.subscriptions.values`. Two defaults of psycopg differ
from that one representation and are overridden here, per connection:

* `infinity` / `-infinity` dates and timestamps raise in psycopg; pgsift maps
  them to `date.max` / `date.min` and `datetime.max` / `datetime.min`.
* arrays of enums load as one string in psycopg (their type is not registered);
  pgsift returns a list of str, like any other array.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.adapt import Buffer
from psycopg.types import TypeInfo
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

ENUM_TYPES_SQL = """
    SELECT t.typname, n.nspname
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype = 'e' AND t.typarray <> 0
"""


def _infinite(data: Buffer, high: Any, low: Any) -> Any:
    raw = bytes(data)
    if raw == b"infinity":
        return high
    if raw == b"-infinity":
        return low
    return None


class InfinityDateLoader(DateLoader):
    def load(self, data: Buffer) -> date:
        return _infinite(data, date.max, date.min) or super().load(data)


class InfinityTimestampLoader(TimestampLoader):
    def load(self, data: Buffer) -> datetime:
        return _infinite(data, datetime.max, datetime.min) or super().load(data)


class InfinityTimestamptzLoader(TimestamptzLoader):
    def load(self, data: Buffer) -> datetime:
        infinite = _infinite(
            data, datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)
        )
        return infinite or super().load(data)


def _register_infinity(adapters: psycopg.adapt.AdaptersMap) -> None:
    adapters.register_loader("date", InfinityDateLoader)
    adapters.register_loader("timestamp", InfinityTimestampLoader)
    adapters.register_loader("timestamptz", InfinityTimestamptzLoader)


def configure(conn: psycopg.Connection[Any]) -> None:
    """Register pgsift's loaders on a sync connection (call once, after connect)."""
    _register_infinity(conn.adapters)
    for name, schema in conn.execute(ENUM_TYPES_SQL).fetchall():
        info = TypeInfo.fetch(conn, f'"{schema}"."{name}"')
        if info is not None:
            info.register(conn)
    if not conn.autocommit:
        conn.rollback()


async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """Register pgsift's loaders on an async connection (call once, after connect)."""
    _register_infinity(conn.adapters)
    cursor = await conn.execute(ENUM_TYPES_SQL)
    for name, schema in await cursor.fetchall():
        info = await TypeInfo.fetch(conn, f'"{schema}"."{name}"')
        if info is not None:
            info.register(conn)
    if not conn.autocommit:
        await conn.rollback()
