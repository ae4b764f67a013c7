"""The mutation ledger: `pgsift.clients`, one row per client, in the app's own database.

    client_id         text PRIMARY KEY   -- chosen by the client (a UUID, say)
    owner             text NOT NULL      -- the owner claim (`sub`) of its first caller
    last_mutation_id  bigint             -- every mutation up to this one has run
    last_status       text               -- 'ok' | 'refused' | 'error': how that one ended
    last_error        text               -- its refusal (or failure) message, else NULL
    failed            jsonb              -- the last FAILED_KEPT refused / failed ones:
                                         -- [{"id", "status", "message"}, ...], oldest first
    updated_at        timestamptz

A mutation's writes and the advance of `last_mutation_id` commit in one
transaction, under the row lock of `lock`: that is what makes a mutation run at
most once per client whichever gateway receives it, and — because the row is
captured like any table (REPLICA IDENTITY FULL, in the publication) — what tells
a client, in the feed, at which position its mutation's effects are visible.
`capture --setup` creates the table (when `[mutators]` are configured) and
`pgsift doctor` prints the SQL (`readiness.check`); for a table made by an older
version, the same SQL adds the columns it lacks (`missing_columns`).

`failed` is there for a client that learns of its mutations from a later version
of the row than their own (its copy was reset, and the mutate answer was lost):
`last_status` tells only how the last one ended, `failed` how each recent one
that changed nothing did, so none of them is taken for run.
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
# Refused and failed mutations a row keeps (its every version is in the feed, old and
# new: the bound keeps that small). A client whose copy was reset learns older ones as run.
FAILED_KEPT = 32

CREATE_SQL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}; "
    f"CREATE TABLE IF NOT EXISTS {QUALIFIED} ("
    "client_id text PRIMARY KEY, "
    "owner text NOT NULL, "
    "last_mutation_id bigint NOT NULL DEFAULT 0, "
    "last_status text NOT NULL DEFAULT 'ok' CHECK (last_status IN ('ok', 'refused', 'error')), "
    "last_error text, "
    "failed jsonb NOT NULL DEFAULT '[]', "
    "updated_at timestamptz NOT NULL DEFAULT now()); "
    # A ledger made before `failed` existed gains it (an existing row: no failures kept).
    f"ALTER TABLE {QUALIFIED} ADD COLUMN IF NOT EXISTS failed jsonb NOT NULL DEFAULT '[]'; "
    f"ALTER TABLE {QUALIFIED} REPLICA IDENTITY FULL;"
)
COLUMNS = (
    "client_id", "owner", "last_mutation_id", "last_status", "last_error", "failed",
    "updated_at",
)

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
    f"UPDATE {QUALIFIED} SET last_mutation_id = %(id)s, last_status = %(status)s,"
    " last_error = %(error)s, updated_at = now() WHERE client_id = %(client)s"
)
# The same, keeping the outcome in `failed` too (dropping the oldest past FAILED_KEPT:
# one is added at a time, so removing one keeps the bound).
_ADVANCE_FAILED = (
    f"UPDATE {QUALIFIED} SET last_mutation_id = %(id)s, last_status = %(status)s,"
    " last_error = %(error)s, updated_at = now(),"
    " failed = CASE WHEN jsonb_array_length(failed) >= %(kept)s THEN failed - 0"
    " ELSE failed END || jsonb_build_array(jsonb_build_object("
    "'id', %(id)s::bigint, 'status', %(status)s::text, 'message', %(error)s::text))"
    " WHERE client_id = %(client)s"
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
    """Record mutation `mutation_id` as run, with how it ended (in the locked transaction);
    a refused or failed one is kept in `failed` too."""
    values = {"id": mutation_id, "status": status, "error": error, "client": client_id,
              "kept": FAILED_KEPT}  # fmt: skip
    conn.execute(_ADVANCE if status == "ok" else _ADVANCE_FAILED, values)


def missing_columns(conn: Conn) -> tuple[str, ...] | None:
    """The columns this version writes that the ledger table lacks (a table made by an
    older version: `CREATE_SQL` adds them); None when there is no table."""
    found = {
        str(name)
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attnum > 0 AND NOT attisdropped",
            [QUALIFIED],
        )
    }
    return None if not found else tuple(c for c in COLUMNS if c not in found)


def exists(conn: Conn) -> bool:
    """Whether the ledger table is there (with the columns this version writes)."""
    return missing_columns(conn) == ()


def require(conn: Conn) -> None:
    """ConfigError saying how to create (or complete) the ledger when it is not ready."""
    missing = missing_columns(conn)
    if missing is None:
        raise ConfigError(
            f"mutators are configured but the ledger table {QUALIFIED} is missing: run "
            "`pgsift capture --setup` with the same config, or have the owner of the "
            f"database run: {CREATE_SQL}"
        )
    if missing:
        raise ConfigError(
            f"the ledger table {QUALIFIED} lacks column(s) {', '.join(missing)} (made by an "
            "older pgsift): run `pgsift capture --setup` with the same config, or have the "
            f"owner of the database run: {CREATE_SQL}"
        )
