"""The optimistic layer of the replica: pending mutations' writes on top of the server rows.

Tables (in the replica's SQLite file, next to the server copy):

* `pending_mutations`: the queue (`pending.PendingQueue`): each mutation's name,
  args and recorded writes (`pending.LocalWrites`), whether the server answered
  (`acked`), how it ended (`status`, `message`), whether a `sync` message
  confirmed it (`confirmed`; `confirmed_at`: that message's cursor).
* `optimistic_rows`: per query, the rows those writes change (NULL: deleted).
* `sync_client`: this replica's client id and its next mutation id.
* `sync_queries.confirmed` (`replica`): per query, the highest mutation id its
  own stream confirmed.

`rebase(db, query)` recomputes a query's layer from its server rows and every
pending mutation that its copy does not reflect yet. Every `sync` message of the
transaction that ran mutation n carries `confirmed: n` (docs/writes.md) — in
every query of the client, changes or not — and it is applied in the same
SQLite transaction as the message's rows. So a query's copy reflects mutation
n exactly from the message that confirms n in *that query's* stream: from then
on its effects are in the server rows, and replaying its writes would show them
twice. A refused (or failed) mutation changed nothing on the server: its writes
leave every layer as soon as the refusal is known. The rule needs no timing and
no guess, whichever query's message arrives first.
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
    confirmed    INTEGER NOT NULL DEFAULT 0, -- a sync message confirmed it (reported)
    confirmed_at TEXT                  -- that message's cursor (NULL: a snapshot's first)
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
    """The server's word, in one query's `sync` message: every mutation of this client up
    to `last_mutation_id` has run, and the query's copy with this message (at `cursor`)
    holds their effects. `failed` names those that refused or failed."""

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


def rebase(db: sqlite3.Connection, query: str) -> None:
    """Recompute the optimistic layer of `query` (inside a transaction).

    The server rows, then the recorded writes of every pending mutation the copy
    does not reflect yet (past the query's own confirmed id, not refused), in id
    order. A patch applies to the row as it stands at that point, so it lands on
    the newest server row (Linear's field-level transactions); a patch of a row
    that is gone does nothing.
    """
    db.execute("DELETE FROM optimistic_rows WHERE query = ?", [query])
    layer: dict[str, dict[str, Any] | None] = {}
    for (writes,) in db.execute(
        "SELECT writes FROM pending_mutations WHERE id > ? AND (status IS NULL"
        " OR status NOT IN ('refused', 'error')) ORDER BY id",
        [confirmed_id(db, query)],
    ).fetchall():
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


def confirm(db: sqlite3.Connection, query: str, confirmation: Confirmation) -> list[Settled]:
    """Record `confirmation`, which came in a message of `query` (inside the transaction
    that applies the message); the mutations it settled (each reported once: the first
    query to confirm it does; a refusal known from the mutate response was reported then).
    """
    db.execute(
        "UPDATE sync_queries SET confirmed = max(confirmed, ?) WHERE name = ?",
        [confirmation.last_mutation_id, query],
    )
    settled = []
    touched: set[str] = set()
    for mutation_id, name, args, writes, status in db.execute(
        "SELECT id, name, args, writes, status FROM pending_mutations"
        " WHERE id <= ? AND confirmed = 0 ORDER BY id",
        [confirmation.last_mutation_id],
    ).fetchall():
        failure = confirmation.failed.get(mutation_id)
        known = status in WITHOUT_EFFECT
        new_status = failure.status if failure else status if known else "ok"
        message = failure.message if failure else None
        db.execute(
            "UPDATE pending_mutations SET confirmed = 1, confirmed_at = ?, acked = 1,"
            " status = ?, message = coalesce(?, message) WHERE id = ?",
            [confirmation.cursor, new_status, message, mutation_id],
        )
        if failure and not known:  # its writes leave every query's layer now
            touched |= queries_of(writes)
        if not known:
            settled.append(Settled(mutation_id, name, json.loads(args), new_status, message))
    for other in touched:
        rebase(db, other)
    return settled


def prune(db: sqlite3.Connection) -> None:
    """Forget settled mutations that no query's layer needs any more: refused ones the
    server answered, and confirmed ones every query they write has confirmed too."""
    confirmed = dict(db.execute("SELECT name, confirmed FROM sync_queries").fetchall())
    done = []
    for mutation_id, writes, status in db.execute(
        "SELECT id, writes, status FROM pending_mutations"
        " WHERE acked = 1 AND (status IN ('refused', 'error') OR confirmed = 1)"
    ).fetchall():
        if status in WITHOUT_EFFECT or all(
            confirmed.get(query, 0) >= mutation_id for query in queries_of(writes)
        ):
            done.append((mutation_id,))
    db.executemany("DELETE FROM pending_mutations WHERE id = ?", done)


def confirmed_id(db: sqlite3.Connection, query: str) -> int:
    """The highest mutation id `query`'s own stream has confirmed."""
    found = db.execute("SELECT confirmed FROM sync_queries WHERE name = ?", [query]).fetchone()
    return 0 if found is None else int(found[0])


def queries_of(writes: str) -> set[str]:
    """The queries a mutation's recorded writes (JSON text) touch."""
    return {str(write["query"]) for write in json.loads(writes)}


def _server_row(db: sqlite3.Connection, query: str, key: str) -> dict[str, Any] | None:
    found = db.execute(f'SELECT row FROM "rows_{query}" WHERE key = ?', [key]).fetchone()
    return None if found is None else dict(json.loads(found[0]))
