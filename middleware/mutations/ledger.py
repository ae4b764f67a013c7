"""The mutation ledger: `pgsift.clients`, one row per client, in the app's own database.

    client_id         text PRIMARY KEY   -- chosen by the client (a UUID, say)
    owner             text NOT NULL      -- the owner claim (`sub`) of its first caller
    last_mutation_id  bigint             -- every mutation up to this one has run
    last_status       text               -- 'ok' | 'refused' | 'error': how that one ended
    last_error        text               -- its refusal (or failure) message, else NULL
    updated_at        timestamptz

A mutation's writes and the advance of `last_mutation_id` commit in one
transaction, under the row lock of `lock`: that is what makes a mutation run at
most once per client whichever gateway receives it, and — because the row is
captured like any table (REPLICA IDENTITY FULL, in the publication) — what tells
a client, in the feed, at which position its mutation's effects are visible.
`capture --setup` creates the table (when `[mutators]` are configured) and
`pgsift doctor` prints the SQL (`readiness.check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from pgsift.middleware.errors import ConfigError, MutationUnavailableError

SCHEMA = "pgsift"
TABLE = "clients"
QUALIFIED = f"{SCHEMA}.{TABLE}"

Status = Literal["ok", "refused", "error"]

CREATE_SQL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}; "
    f"CREATE TABLE IF NOT EXISTS {QUALIFIED} ("
    "client_id text PRIMARY KEY, "
    "owner text NOT NULL, "
    "last_mutation_id bigint NOT NULL DEFAULT 0, "
    "last_status text NOT NULL DEFAULT 'ok' CHECK (last_status IN ('ok', 'refused', 'error')), "
    "last_error text, "
    "updated_at timestamptz NOT NULL DEFAULT now()); "
    f"ALTER TABLE {QUALIFIED} REPLICA IDENTITY FULL;"
)
COLUMNS = ("client_id", "owner", "last_mutation_id", "last_status", "last_error", "updated_at")

_LOCK = (
    f"SELECT owner, last_mutation_id, last_status, last_error FROM {QUALIFIED}"
    " WHERE client_id = %s FOR UPDATE"
)
_READ = (
    f"SELECT owner, last_mutation_id, last_status, last_error FROM {QUALIFIED}"
    " WHERE client_id = %s"
)
_CREATE_ROW = (
    f"INSERT INTO {QUALIFIED} (client_id, owner) VALUES (%s, %s)"
    " ON CONFLICT (client_id) DO NOTHING"
)
_ADVANCE = (
    f"UPDATE {QUALIFIED} SET last_mutation_id = %s, last_status = %s, last_error = %s,"
    " updated_at = now() WHERE client_id = %s"
)
_CLAIM = (
    f"UPDATE {QUALIFIED} SET last_mutation_id = %(id)s, last_status = 'ok', last_error = NULL,"
    " updated_at = now()"
    " WHERE client_id = %(client)s AND owner = %(owner)s AND last_mutation_id = %(id)s - 1"
)

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A client's row: whose it is, and how far its mutations have run."""

    owner: str
    last_mutation_id: int
    last_status: Status
    last_error: str | None


NEW_CLIENT = LedgerRow(owner="", last_mutation_id=0, last_status="ok", last_error=None)


def lock(conn: Conn, client_id: str, owner: str) -> LedgerRow:
    """The client's row, locked until the transaction ends; created (as `owner`'s) when
    new. Concurrent callers for one client queue here, in whichever gateway."""
    row = conn.execute(_LOCK, [client_id]).fetchone()
    if row is None:
        # Two first mutations at once: one inserts, the other waits for it on the key,
        # does nothing, and then locks the row the first one committed.
        conn.execute(_CREATE_ROW, [client_id, owner])
        row = conn.execute(_LOCK, [client_id]).fetchone()
        if row is None:  # deleted in between by someone else: the caller may retry
            raise MutationUnavailableError(f"the ledger row of client {client_id} vanished")
    return LedgerRow(str(row[0]), int(row[1]), row[2], row[3])


def claim(conn: Conn, client_id: str, owner: str, mutation_id: int) -> bool:
    """Advance the client's row to `mutation_id` (status ok) when it is the owner's and
    the next id: one statement that also takes the row lock (the common case). False:
    nothing changed (a new client, a duplicate, a gap, another owner): `lock` says which."""
    cursor = conn.execute(_CLAIM, {"id": mutation_id, "client": client_id, "owner": owner})
    return cursor.rowcount == 1


def read(conn: Conn, client_id: str) -> LedgerRow | None:
    """The client's row as committed, or None for a client never seen (no lock)."""
    row = conn.execute(_READ, [client_id]).fetchone()
    return None if row is None else LedgerRow(str(row[0]), int(row[1]), row[2], row[3])


def advance(
    conn: Conn, client_id: str, mutation_id: int, status: Status, error: str | None
) -> None:
    """Record mutation `mutation_id` as run, with how it ended (in the locked transaction)."""
    conn.execute(_ADVANCE, [mutation_id, status, error, client_id])


def exists(conn: Conn) -> bool:
    """Whether the ledger table is there (with the columns this version writes)."""
    found = {
        str(name)
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attnum > 0 AND NOT attisdropped",
            [QUALIFIED],
        )
    }
    return set(COLUMNS) <= found


def require(conn: Conn) -> None:
    """ConfigError saying how to create the ledger when it is missing."""
    if not exists(conn):
        raise ConfigError(
            f"mutators are configured but the ledger table {QUALIFIED} is missing: run "
            "`pgsift capture --setup` with the same config, or have the owner of the "
            f"database run: {CREATE_SQL}"
        )
