"""Make a psycopg 3 connection return exactly the values capture puts in the feed.

Snapshots, batch loads and dumps read rows with psycopg 3; capture decodes
pgoutput text with `pgsift.subscriptions.pgtext`. Where psycopg's defaults
differ from that one representation they are overridden here, per connection;
every pgsift connection that reads rows calls `configure` / `configure_async`
once after connecting (a psycopg_pool takes it as its `configure=`):

* the session's `TimeZone` is UTC: timestamptz values (and the text of ranges
  of them) come out in UTC whatever the server's or role's default;
* `infinity` / `-infinity` dates and timestamps raise in psycopg; pgsift maps
  them to `date.max` / `date.min` and `datetime.max` / `datetime.min`;
* json / jsonb values that are the JSON `null` load as `JSON_NULL`, not None
  (SQL NULL's value), also as elements of json[] / jsonb[] arrays;
* arrays of enums load as one string in psycopg (their type is not registered);
  pgsift returns a list of str, like any other array;
* types psycopg decodes to classes of its own that `pgtext` does not know
  (inet, cidr, ranges, multiranges) load as their text output - what pgoutput
  sends and `pgtext.parse_text` returns for a type it does not know. (Not
  `::text` in the SQL: inet's cast to text adds the netmask its output omits.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Buffer
from psycopg.pq import Format
from psycopg.types import TypeInfo
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader
from psycopg.types.json import set_json_loads
from psycopg.types.string import TextLoader

from pgsift.subscriptions import pgtext, typenames

SET_TIMEZONE_SQL = "SET TimeZone = 'UTC'"

# Every enum with an array type, in one round trip (TypeInfo.fetch takes one each).
ENUM_TYPES_SQL = """
    SELECT t.typname, t.oid, t.typarray, t.oid::regtype::text, t.typdelim
    FROM pg_type t
    WHERE t.typtype = 'e' AND t.typarray <> 0
"""

# Builtin types psycopg would decode that `pgtext` does not know: loaded as text.
# Their arrays follow, as psycopg's array loaders look the element loader up.
AS_TEXT_OIDS: tuple[int, ...] = tuple(
    info.oid
    for info in postgres.types
    if postgres.adapters.get_loader(info.oid, Format.TEXT) is not None
    and not typenames.is_known_type(info.name)
)


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


def _register_loaders(adapters: psycopg.adapt.AdaptersMap) -> None:
    adapters.register_loader("date", InfinityDateLoader)
    adapters.register_loader("timestamp", InfinityTimestampLoader)
    adapters.register_loader("timestamptz", InfinityTimestamptzLoader)
    for oid in AS_TEXT_OIDS:
        adapters.register_loader(oid, TextLoader)
    # The array loaders look their element's loader up here too.
    set_json_loads(pgtext.parse_json, adapters)


def _register_enums(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
                    rows: list[Any]) -> None:
    for name, oid, array_oid, regtype, delimiter in rows:
        TypeInfo(name, oid, array_oid, regtype=regtype, delimiter=delimiter).register(conn)


def configure(conn: psycopg.Connection[Any]) -> None:
    """Set up a sync connection (call once, after connect, outside a transaction)."""
    _register_loaders(conn.adapters)
    conn.execute(SET_TIMEZONE_SQL)
    _register_enums(conn, conn.execute(ENUM_TYPES_SQL).fetchall())
    if not conn.autocommit:
        conn.commit()  # keeps the SET


async def configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up an async connection (call once, after connect, outside a transaction)."""
    _register_loaders(conn.adapters)
    await conn.execute(SET_TIMEZONE_SQL)
    cursor = await conn.execute(ENUM_TYPES_SQL)
    _register_enums(conn, await cursor.fetchall())
    if not conn.autocommit:
        await conn.commit()  # keeps the SET
