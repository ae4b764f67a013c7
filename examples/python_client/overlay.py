"""The optimistic layer of the replica: pending mutations' writes on top of the server rows.

Tables (in the replica's SQLite file, next to the server copy):

* `pending_mutations`: the queue (`pending.PendingQueue`): each mutation's name,
  args and recorded writes (`pending.LocalWrites`), whether the server answered
  (`acked`), how it ended (`status`, `message`), and `confirmed_at`: the feed
  cursor of the transaction that ran it, once a `Confirmation` said so.
* `optimistic_rows`: per query, the rows those writes change (NULL: deleted).
* `sync_client`: this replica's client id and its next mutation id.

`rebase(db, query)` recomputes a query's layer from its server rows and every
pending mutation that the copy does not yet reflect. A mutation is reflected
once it is refused (nothing changed on the server), or once it is confirmed at
a cursor the query's copy has reached: from then on its effects are in the
server rows, and replaying its writes would show them twice. The rule needs no
timing and no guess; it holds whichever of a transaction's messages (the
ledger's, the query's) arrives first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_client (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    client_id        TEXT NOT NULL,      -- this replica's client id (the server's ledger key)
    next_mutation_id INTEGER NOT NULL    -- the id the next local mutation gets
);
CREATE TABLE IF NOT EXISTS pending_mutations (
    id           INTEGER PRIMARY KEY,  -- the client's mutation id (consecutive)
    name         TEXT NOT NULL,
    args         TEXT NOT NULL,        -- JSON object
    writes       TEXT NOT NULL,        -- JSON array of the optimistic writes
    acked        INTEGER NOT NULL DEFAULT 0, -- the server answered: never send it again
    status       TEXT,                 -- ok | refused | error | duplicate, once known
    message      TEXT,                 -- why, for refused and error
    confirmed_at TEXT                  -- feed cursor of its transaction, once confirmed
);
CREATE TABLE IF NOT EXISTS optimistic_rows (
    query TEXT NOT NULL,
    key   TEXT NOT NULL,
    row   TEXT,                        -- JSON; NULL: deleted by a pending write
    PRIMARY KEY (query, key)
) WITHOUT ROWID;
"""
# A mutation refused (or failed) on the server changed nothing there: its local
# writes go at once, wherever its confirmation stands.
WITHOUT_EFFECT = ("refused", "error")


@dataclass(frozen=True)
class Failure:
    """How a mutation that changed nothing on the server ended."""

    status: str  # "refused" | "error"
    message: str


@dataclass(frozen=True)
class Confirmation:
    """The server's word: every mutation of this client up to `last_mutation_id` has run,
    and a copy at `cursor` holds their effects. `failed` names those that refused.

    Phase A reads it from the client's row of the ledger (`pgsift.clients`)
    followed as a query; the `sync` stream's own `confirmed` field will carry the
    same at each query's own cursor (docs/writes.md).
    """

    last_mutation_id: int
    cursor: str | None
    failed: Mapping[int, Failure] = field(default_factory=dict)


@dataclass(frozen=True)
class Settled:
    """A pending mutation whose outcome became known: `status` ok, refused or error."""

    id: int
    name: str
    args: dict[str, Any]
    status: str
    message: str | None


def position(cursor: str | None) -> tuple[int, int] | None:
    """A feed cursor (`"<lsn>-<n>"`, maybe `@<snapshot>`) as a comparable pair."""
    if not cursor:
        return None
    lsn, _, chunk = cursor.partition("@")[0].partition("-")
    return int(lsn), int(chunk or 0)


def reached(cursor: str | None, target: str | None) -> bool:
    """Whether a copy at `cursor` holds every transaction up to `target`."""
    at, goal = position(cursor), position(target)
    return at is not None and goal is not None and at >= goal


def rebase(db: sqlite3.Connection, query: str) -> None:
    """Recompute the optimistic layer of `query` (inside a transaction).

    The server rows, then the recorded writes of every pending mutation the copy
    does not reflect yet, in id order. A patch applies to the row as it stands
    at that point, so it lands on the newest server row (Linear's field-level
    transactions); a patch of a row that is gone does nothing.
    """
    db.execute("DELETE FROM optimistic_rows WHERE query = ?", [query])
    cursor = _cursor(db, query)
    layer: dict[str, dict[str, Any] | None] = {}
    for writes, status, confirmed_at in db.execute(
        "SELECT writes, status, confirmed_at FROM pending_mutations ORDER BY id"
    ).fetchall():
        if status in WITHOUT_EFFECT or reached(cursor, confirmed_at):
            continue
        for write in json.loads(writes):
            if write["query"] != query:
                continue
            key = write["key"]
            if write["op"] == "put":
                layer[key] = write["row"]
            elif write["op"] == "delete":
                layer[key] = None
            else:
                current = layer[key] if key in layer else _server_row(db, query, key)
                if current is not None:
                    layer[key] = {**current, **write["fields"]}
    db.executemany(
        "INSERT INTO optimistic_rows (query, key, row) VALUES (?, ?, ?)",
        [
            (query, key, None if row is None else json.dumps(row, ensure_ascii=False))
            for key, row in layer.items()
        ],
    )


def confirm(db: sqlite3.Connection, confirmation: Confirmation) -> list[Settled]:
    """Record `confirmation` (inside a transaction); the mutations it settled.

    A refusal known from the mutate response stays a refusal (it was reported
    then, so it is not reported again).
    """
    settled = []
    touched: set[str] = set()
    for mutation_id, name, args, writes, status in db.execute(
        "SELECT id, name, args, writes, status FROM pending_mutations"
        " WHERE id <= ? AND confirmed_at IS NULL ORDER BY id",
        [confirmation.last_mutation_id],
    ).fetchall():
        failure = confirmation.failed.get(mutation_id)
        known = status in WITHOUT_EFFECT
        new_status = failure.status if failure else status if known else "ok"
        message = failure.message if failure else None
        db.execute(
            "UPDATE pending_mutations SET confirmed_at = ?, acked = 1, status = ?,"
            " message = coalesce(?, message) WHERE id = ?",
            [confirmation.cursor, new_status, message, mutation_id],
        )
        touched |= queries_of(writes)
        if not known:
            settled.append(Settled(mutation_id, name, json.loads(args), new_status, message))
    for query in touched:
        rebase(db, query)
    prune(db)
    return settled


def prune(db: sqlite3.Connection) -> None:
    """Forget settled mutations that no query's layer needs any more.

    A confirmed mutation is done with a query once the copy reached its cursor,
    or once its writes change nothing in the copy: a transaction that left a
    query's rows as they were (a status set to the one it had) sends that query
    no message, so its cursor may not move for a long time.
    """
    cursors = dict(db.execute("SELECT name, cursor FROM sync_queries").fetchall())
    done = []
    for mutation_id, writes, status, confirmed_at in db.execute(
        "SELECT id, writes, status, confirmed_at FROM pending_mutations"
        " WHERE acked = 1 AND (status IN ('refused', 'error') OR confirmed_at IS NOT NULL)"
    ).fetchall():
        recorded = json.loads(writes)
        if status in WITHOUT_EFFECT or all(
            reached(cursors.get(query), confirmed_at) or _reflected(db, query, recorded)
            for query in queries_of(writes)
        ):
            done.append((mutation_id,))
    db.executemany("DELETE FROM pending_mutations WHERE id = ?", done)


def _reflected(db: sqlite3.Connection, query: str, writes: list[dict[str, Any]]) -> bool:
    """Whether `writes` change nothing in the server rows of `query`."""
    for write in writes:
        if write["query"] != query:
            continue
        row = _server_row(db, query, write["key"])
        if write["op"] == "put":
            unchanged = row == write["row"]
        elif write["op"] == "delete":
            unchanged = row is None
        else:
            unchanged = row is None or all(
                row.get(column) == value for column, value in write["fields"].items()
            )
        if not unchanged:
            return False
    return True


def queries_of(writes: str) -> set[str]:
    """The queries a mutation's recorded writes (JSON text) touch."""
    return {str(write["query"]) for write in json.loads(writes)}


def _cursor(db: sqlite3.Connection, query: str) -> str | None:
    found = db.execute("SELECT cursor FROM sync_queries WHERE name = ?", [query]).fetchone()
    return None if found is None else found[0]


def _server_row(db: sqlite3.Connection, query: str, key: str) -> dict[str, Any] | None:
    found = db.execute(f'SELECT row FROM "rows_{query}" WHERE key = ?', [key]).fetchone()
    return None if found is None else dict(json.loads(found[0]))
