"""A local SQLite copy of the rows of some queries, and where each copy stands in the feed.

One table per query (`rows_<name>`: the row's primary key as canonical JSON, and
the row as JSON, so `json_extract(row, '$.title')` queries it), plus one table of
cursors and column types (`sync_queries`). Rows are stored in their wire form,
which is exact (int8 and numeric as strings, json as its text:
docs/wire-values.md); `values()` decodes them into Python values by the column
types the server sent with the first message. Every server message is applied in one SQLite
transaction together with its cursor: after a crash the copy is exactly what it
was at the stored cursor, and resuming from there repeats nothing and skips nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgsift.subscriptions.wire import from_json, to_wire

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_queries (
    name     TEXT PRIMARY KEY,
    query    TEXT NOT NULL,
    params   TEXT NOT NULL,         -- JSON array
    cursor   TEXT,                  -- resume point; NULL: bootstrap again
    complete INTEGER NOT NULL DEFAULT 0, -- 1 once a full snapshot has been applied
    types    TEXT                   -- JSON object: column -> Postgres type name
)
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


class Replica:
    """SQLite-backed copies of query results; `register` a query, `apply` its messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL: readers (a UI, a test) never block the writer; NORMAL survives a
        # process crash, which is what resuming from a cursor relies on.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sync_queries)")}
        if "types" not in columns:  # a replica written before the column existed
            self._db.execute("ALTER TABLE sync_queries ADD COLUMN types TEXT")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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
        with self._transaction() as db:
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
        with self._transaction() as db:
            db.execute(f'DELETE FROM "rows_{name}"')
            db.execute(
                "UPDATE sync_queries SET cursor = NULL, complete = 0 WHERE name = ?", [name]
            )

    def apply(
        self,
        name: str,
        changes: Sequence[Mapping[str, Any]],
        *,
        cursor: str | None = None,
        up_to_date: bool = False,
        types: Mapping[str, str] | None = None,
    ) -> None:
        """Apply one message's changes (`{op, key, row}`) and its cursor, all or nothing.

        Changes apply by key, so a repeated one is harmless. The cursor is kept
        only once the copy is complete (after the first `upToDate`): a cursor in
        the middle of a snapshot is no place to resume from.
        """
        table = f'"rows_{name}"'
        with self._transaction() as db:
            if types is not None:
                db.execute(
                    "UPDATE sync_queries SET types = ? WHERE name = ?", [json.dumps(types), name]
                )
            for change in changes:
                op = str(change["op"]).upper()
                key = key_text(_decoded(change["key"]))
                if op == "DELETE":
                    db.execute(f"DELETE FROM {table} WHERE key = ?", [key])
                elif op in ("INSERT", "UPDATE"):
                    row = _decoded(change["row"])
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

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of a query's copy, in key order."""
        return [
            json.loads(row)
            for (row,) in self._db.execute(f'SELECT row FROM "rows_{name}" ORDER BY key')
        ]

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
        types = self.types(name)
        if isinstance(key, Mapping):  # typed values or wire values alike: the wire form
            key = {
                c: to_wire(types[c], from_json(types[c], v)) if c in types else v
                for c, v in key.items()
            }
        found = self._db.execute(
            f'SELECT row FROM "rows_{name}" WHERE key = ?', [key_text(key)]
        ).fetchone()
        return None if found is None else dict(json.loads(found[0]))

    def count(self, name: str) -> int:
        return int(self._db.execute(f'SELECT count(*) FROM "rows_{name}"').fetchone()[0])


def _decoded(value: Any) -> Any:
    # A GraphQL JSON scalar may arrive as the object itself or as its JSON text.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
