"""Reading a shape's rows out of Postgres in one consistent snapshot, as wire lines.

Shared by the live bootstrap (gateway) and the dump builder (workers): record
the feed position, then open a `REPEATABLE READ READ ONLY` transaction whose
first statement takes the snapshot (`pg_current_snapshot()`), then stream the
rows through a server-side cursor so memory stays flat whatever the size.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from typing import Any

import psycopg

from pgsift.middleware.dumps.cursor import BootstrapCursor, Snapshot
from pgsift.middleware.dumps.format import ROW_PREFIX, ROW_SUFFIX
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.feed.retention import FeedRetention
from pgsift.middleware.pgtypes import configure
from pgsift.subscriptions import values
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

FETCH_ROWS = 2000

# Types whose psycopg value already is its JSON form (see values.to_json).
_AS_IS = frozenset({"int2", "int4", "int8", "text", "varchar", "bpchar", "bool", "json", "jsonb"})
# Shortcuts equal to values.to_json for one type: it dispatches on the value's
# class, which costs more than the JSON encoding itself on wide rows.
_FAST: dict[str, Callable[[Any], Any]] = {
    "timestamptz": datetime.isoformat,
    "timestamp": datetime.isoformat,
    "date": date.isoformat,
    "time": time_of_day.isoformat,
    "numeric": str,
    "uuid": str,
}
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def database_name(database_url: str) -> str:
    """The dbname of a Postgres URL: it names the feed and the dumps' keys."""
    name = psycopg.conninfo.conninfo_to_dict(database_url).get("dbname")
    if not name:
        raise ConfigError(f"the database URL names no database: {database_url}")
    return str(name)


@dataclass(frozen=True, slots=True)
class ShapeLayout:
    """What a dump header says about a shape: columns, their types, a schema hash."""

    shape_key: str
    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    schema_hash: str

    @classmethod
    def of(cls, shape: Shape, catalog: Catalog) -> ShapeLayout:
        table = catalog.table(shape.table)
        columns = tuple(shape.columns)
        types = tuple(table.columns[c] for c in columns)
        # The whole table's definition: a dump is stale after any column change.
        definition = [table.name, sorted(table.columns.items()), list(table.primary_key)]
        schema_hash = hashlib.blake2b(json.dumps(definition).encode(), digest_size=8).hexdigest()
        return cls(shape.key, table.name, columns, types, schema_hash)


class RowEncoder:
    """psycopg row tuples -> concatenated wire lines `{"type":"row","row":{...}}\\n`."""

    def __init__(self, columns: Sequence[str], types: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._convert = [_converter(t) for t in types]

    def encode(self, rows: Sequence[Sequence[Any]]) -> bytes:
        columns, convert = self.columns, self._convert
        lines = []
        for row in rows:
            document = {
                name: value if fn is None or value is None else fn(value)
                for name, fn, value in zip(columns, convert, row, strict=True)
            }
            lines.append(_json_encode(document))
        if not lines:
            return b""
        middle = (ROW_SUFFIX + ROW_PREFIX).decode()
        return ROW_PREFIX + middle.join(lines).encode() + ROW_SUFFIX


def _converter(type_name: str) -> Callable[[Any], Any] | None:
    """How a non-NULL value of the type becomes its JSON form; None: it already is."""
    element = type_name.removesuffix("[]")
    if element in _AS_IS or not values.is_known_type(element):
        return None  # also enums (str), and arrays of these: nested lists of the same
    fast = _FAST.get(type_name)
    return fast if fast is not None else values.to_json


@dataclass(frozen=True, slots=True)
class SnapshotRead:
    """An open `REPEATABLE READ` transaction and where it stands in the feed."""

    conn: psycopg.Connection[Any]
    position: FeedPosition  # the feed's end, read before the snapshot
    snapshot: Snapshot
    taken_at: float

    @property
    def cursor(self) -> BootstrapCursor:
        return BootstrapCursor(self.position, self.snapshot)

    def rows(self, sql: str, params: Sequence[Any], batch: int = FETCH_ROWS
             ) -> Iterator[list[tuple[Any, ...]]]:
        """The query's rows in batches, through a server-side cursor."""
        with self.conn.cursor(name="pgsift_bootstrap") as cur:
            cur.itersize = batch
            cur.execute(sql, params)
            while rows := cur.fetchmany(batch):
                yield rows

    def estimate_rows(self, sql: str, params: Sequence[Any]) -> int:
        """The planner's row estimate (for progress and ETAs; no scan)."""
        explained = self.conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()
        plan: Any = explained[0] if explained else None
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"]) if plan else 0


@contextmanager
def open_snapshot(database_url: str, reader: FeedReader) -> Iterator[SnapshotRead]:
    """Feed position first, then the snapshot: every change missing from it is after that."""
    # The newest entry, or past an all-trimmed feed the last one trimmed (the
    # retention rule refuses positions below it).
    position = FeedRetention(reader.client, reader.stream).bounds().end
    with psycopg.connect(database_url) as conn:
        configure(conn)  # values as capture decodes them, TimeZone UTC
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        snapshot = Snapshot.parse(str(row[0] if row else ""))
        yield SnapshotRead(conn, position, snapshot, time.time())
