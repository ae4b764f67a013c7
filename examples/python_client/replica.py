"""A local SQLite copy of the rows of some queries, and where each copy stands in the feed.

One table per query (`rows_<name>`: the row's primary key as canonical JSON, and
the row as JSON, so `json_extract(row, '$.title')` queries it), plus one table of
cursors and column types (`sync_queries`). Rows are stored in their wire form,
which is exact (int8 and numeric as strings, json as its text:
docs/wire-values.md); `values()` decodes them into Python values by the column
types the server sent with the first message. Every server message is applied in one SQLite
transaction together with its cursor: after a crash the copy is exactly what it
was at the stored cursor, and resuming from there repeats nothing and skips nothing.

Local writes not yet in the server's rows (`pending.PendingQueue`) live beside
the copy, never in it: `optimistic_rows` holds, per query, the rows the pending
mutations' recorded writes change, recomputed (`overlay.rebase`) from the server rows
whenever those or the queue change. `rows()`, `row()`, `values()` and
`count()` read the copy with that layer on top; `server_rows()` the copy alone.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from examples.python_client import overlay
from pgsift.subscriptions.wire import from_json, to_wire

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_queries (
    name     TEXT PRIMARY KEY,
    query    TEXT NOT NULL,
    params   TEXT NOT NULL,         -- JSON array
    cursor   TEXT,                  -- resume point; NULL: bootstrap again
    complete INTEGER NOT NULL DEFAULT 0, -- 1 once a full snapshot has been applied
    types    TEXT,                  -- JSON object: column -> Postgres type name
    confirmed INTEGER NOT NULL DEFAULT 0 -- this client's mutations its stream confirmed
);
"""


@dataclass(frozen=True)
class QueryState:
    """What the replica knows about one query."""

    name: str
    query: str
    params: list[Any]
    cursor: str | None
    complete: bool

    @property
    def resume_cursor(self) -> str | None:
        """The cursor to subscribe with: only a complete copy may resume."""
        return self.cursor if self.complete else None


def key_text(key: Any) -> str:
    """The canonical text of a primary-key value: equal keys, equal text."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def wire_values(types: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (Python or wire values) in their wire form, by the columns' types.

    A value that does not decode as its column's type (a temporary key such as
    `"tmp-1"` for a bigint id) stays as given: it can equal no server value.
    """
    result = {}
    for column, value in values.items():
        if column in types:
            with suppress(TypeError, ValueError):
                value = to_wire(types[column], from_json(types[column], value))
        result[column] = value
    return result


class Replica:
    """SQLite-backed copies of query results; `register` a query, `apply` its messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL: readers (a UI, a test) never block the writer; NORMAL survives a
        # process crash, which is what resuming from a cursor relies on.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA + overlay.SCHEMA)
        # Replicas written before a column existed get it.
        for table, column, definition in (
            ("sync_queries", "types", "TEXT"),
            ("sync_queries", "confirmed", "INTEGER NOT NULL DEFAULT 0"),
            ("pending_mutations", "confirmed", "INTEGER NOT NULL DEFAULT 0"),
        ):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The SQLite connection, for reads (writes go through `transaction()`)."""
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite write transaction (the pending queue's changes go through it too)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def register(self, name: str, query: str, params: Sequence[Any] = ()) -> QueryState:
        """Declare a query; a changed query or params under the same name starts over."""
        if not NAME.match(name):
            raise ValueError(f"query name {name!r}: use letters, digits and _ (max 63)")
        params_text = json.dumps(list(params), sort_keys=True)
        with self.transaction() as db:
            db.execute(
                f'CREATE TABLE IF NOT EXISTS "rows_{name}"'
                " (key TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID"
            )
            known = db.execute(
                "SELECT query, params FROM sync_queries WHERE name = ?", [name]
            ).fetchone()
            if known != (query, params_text):
                db.execute(f'DELETE FROM "rows_{name}"')
                db.execute(
                    "INSERT INTO sync_queries (name, query, params) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET query = excluded.query,"
                    " params = excluded.params, cursor = NULL, complete = 0",
                    [name, query, params_text],
                )
        return self.state(name)

    def names(self) -> list[str]:
        return [name for (name,) in self._db.execute("SELECT name FROM sync_queries ORDER BY 1")]

    def state(self, name: str) -> QueryState:
        row = self._db.execute(
            "SELECT query, params, cursor, complete FROM sync_queries WHERE name = ?", [name]
        ).fetchone()
        if row is None:
            raise KeyError(f"no query named {name!r}; register it first")
        return QueryState(name, row[0], json.loads(row[1]), row[2], bool(row[3]))

    def reset(self, name: str) -> None:
        """Forget the rows and the cursor of a query: the next subscription bootstraps."""
        self.state(name)
        with self.transaction() as db:
            db.execute(f'DELETE FROM "rows_{name}"')
            db.execute(
                "UPDATE sync_queries SET cursor = NULL, complete = 0 WHERE name = ?", [name]
            )
            overlay.rebase(db, name)

    def apply(
        self,
        name: str,
        changes: Sequence[Mapping[str, Any]],
        *,
        cursor: str | None = None,
        up_to_date: bool = False,
        types: Mapping[str, str] | None = None,
        confirmed: overlay.Confirmation | None = None,
    ) -> list[overlay.Settled]:
        """Apply one message's changes (`{op, key, row}`) and its cursor, all or nothing.

        Changes apply by key, so a repeated one is harmless. The cursor is kept
        only once the copy is complete (after the first `upToDate`): a cursor in
        the middle of a snapshot is no place to resume from. `confirmed` is the
        message's word that the client's mutations up to an id have run and are
        in this copy (see `overlay.Confirmation`); returned are the pending
        mutations it settled.
        """
        table = f'"rows_{name}"'
        with self.transaction() as db:
            if types is not None:
                db.execute(
                    "UPDATE sync_queries SET types = ? WHERE name = ?", [json.dumps(types), name]
                )
            for change in changes:
                op = str(change["op"]).upper()
                key = key_text(decoded(change["key"]))
                if op == "DELETE":
                    db.execute(f"DELETE FROM {table} WHERE key = ?", [key])
                elif op in ("INSERT", "UPDATE"):
                    row = decoded(change["row"])
                    db.execute(
                        f"INSERT INTO {table} (key, row) VALUES (?, ?)"
                        " ON CONFLICT (key) DO UPDATE SET row = excluded.row",
                        [key, json.dumps(row, ensure_ascii=False)],
                    )
                else:
                    raise ValueError(f"unknown change op {change['op']!r}")
            db.execute(
                "UPDATE sync_queries SET complete = complete OR ?,"
                " cursor = CASE WHEN (complete OR ?) AND ? IS NOT NULL THEN ? ELSE cursor END"
                " WHERE name = ?",
                [up_to_date, up_to_date, cursor, cursor, name],
            )
            settled = [] if confirmed is None else overlay.confirm(db, name, confirmed)
            overlay.rebase(db, name)
            overlay.prune(db)  # this query may be the last one a confirmed mutation waited for
        return settled

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of a query as the app sees it (copy plus pending writes), in key order."""
        return [json.loads(row) for _, row in self._visible(name)]

    def server_rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of a query's copy as the server sent it (no pending writes), in key order."""
        return [
            json.loads(row)
            for (row,) in self._db.execute(f'SELECT row FROM "rows_{name}" ORDER BY key')
        ]

    def _visible(self, name: str, key: str | None = None) -> list[tuple[str, str]]:
        only = "" if key is None else " AND key = :key"
        return list(self._db.execute(
            f'SELECT key, row FROM "rows_{name}" WHERE key NOT IN'
            f" (SELECT key FROM optimistic_rows WHERE query = :name){only}"
            " UNION ALL SELECT key, row FROM optimistic_rows"
            f" WHERE query = :name AND row IS NOT NULL{only} ORDER BY key",
            {"name": name, "key": key},
        ))

    def types(self, name: str) -> dict[str, str]:
        """Column -> Postgres type name of a query's rows, as the server sent them."""
        found = self._db.execute("SELECT types FROM sync_queries WHERE name = ?", [name]).fetchone()
        if found is None:
            raise KeyError(f"no query named {name!r}; register it first")
        return dict(json.loads(found[0] or "{}"))

    def values(self, name: str) -> list[dict[str, Any]]:
        """Every row of a query's copy as exact Python values (int, Decimal, datetime,
        JSON_NULL for a json null, ...), in key order."""
        types = self.types(name)
        return [
            {column: from_json(types.get(column, "text"), value) for column, value in row.items()}
            for row in self.rows(name)
        ]

    def row(self, name: str, key: Any) -> dict[str, Any] | None:
        """The row of `key` (Python or wire values) as the app sees it, or None."""
        found = self._visible(name, self.key_of(name, key))
        return dict(json.loads(found[0][1])) if found else None

    def key_of(self, name: str, key: Any) -> str:
        """The stored text of a key of query `name`, from Python or wire values."""
        if isinstance(key, Mapping):  # typed values or wire values alike: the wire form
            key = wire_values(self.types(name), key)
        return key_text(key)

    def count(self, name: str) -> int:
        return len(self._visible(name))


def decoded(value: Any) -> Any:
    """A key or row as received: a GraphQL JSON scalar may arrive as its JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
