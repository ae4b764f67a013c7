"""Confirmations: where a client's mutations stand, read from its ledger row's versions.

Each mutation commits in a transaction of its own that also writes the client's
row of `pgsift.clients` (`ledger`), and the row is captured like any table: a
version of it in the feed says "every mutation of this client up to
`last_mutation_id` has run, and this is how the last one ended", at the cursor of
the very transaction that ran it. The gateway attaches that to the `sync`
messages of the client's connections (`confirmed`, docs/writes.md section 5):

* `ledger_confirmations(entry)` — the versions in one feed entry, the last per
  client (the tailer and a subscription's catch-up call it on every entry that
  has a change of the ledger table, nothing else);
* `read_confirmed(conn, binding, stamp)` — the version a snapshot holds, for a
  subscription's first message with a cursor; `None` when the snapshot does not see it (the
  feed brings it after the snapshot's position, at its own cursor);
* `ClientBinding` — which client a connection speaks for (its `clientId` in
  `connection_init`), and whose it must be (the caller's owner claim): a version
  whose `owner` differs is never attached, so no one learns another's outcomes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.errors import MutationError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.mutations.ledger import QUALIFIED, Status
from pgsift.middleware.mutations.request import CLIENT_ID

STATUSES: frozenset[str] = frozenset({"ok", "refused", "error"})
_READ = (
    "SELECT xmin::text::bigint, last_mutation_id, last_status, last_error, failed"
    f" FROM {QUALIFIED} WHERE client_id = %s AND owner = %s"
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A mutation of the client that changed nothing: refused, or its mutator failed."""

    id: int
    status: Status
    message: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "message": self.message}


@dataclass(frozen=True, slots=True)
class Confirmed:
    """Every mutation of the client up to `last_mutation_id` has run; that one ended
    with `status` (`message`: why, for refused and error). `failed`: the client's
    recent mutations that changed nothing (`ledger.FAILED_KEPT` at most, oldest
    first), so that a client learning of several at once knows which did not run."""

    last_mutation_id: int
    status: Status
    message: str | None
    owner: str
    failed: tuple[Failure, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"lastMutationId": self.last_mutation_id, "status": self.status,
                "message": self.message, "failed": [f.to_json() for f in self.failed]}


@dataclass(frozen=True, slots=True)
class ClientBinding:
    """The client a connection speaks for, and the owner its ledger row must have."""

    client_id: str
    owner: str

    @classmethod
    def of(cls, client_id: Any, claims: Mapping[str, Any], owner_claim: str) -> ClientBinding:
        """The binding of `connection_init`'s `clientId`; MutationError when it is not a
        client id or the caller has no owner claim."""
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            raise MutationError(
                '"clientId" must be a string of 1 to 64 letters, digits and _ . : -'
            )
        owner = claims.get(owner_claim)
        if isinstance(owner, bool) or not isinstance(owner, str | int) or owner == "":
            raise MutationError(
                f"a clientId needs the caller's {owner_claim!r} claim (mutations_owner_claim)"
            )
        return cls(client_id, str(owner))


def touches_ledger(entry: FeedEntry) -> bool:
    return any(change.table == QUALIFIED for change in entry.changes)


def ledger_confirmations(entry: FeedEntry) -> dict[str, Confirmed]:
    """The ledger row versions `entry` writes, the last one per client id.

    An insert at id 0 (a new client's row, before its first mutation ran) and a
    delete confirm nothing.
    """
    found: dict[str, Confirmed] = {}
    for change in entry.changes:
        if change.table != QUALIFIED or change.new is None:
            continue
        confirmed = _confirmed(change.new)
        if confirmed is not None:
            found[str(change.new["client_id"])] = confirmed
    return found


def _confirmed(row: Mapping[str, Any]) -> Confirmed | None:
    last, status = row.get("last_mutation_id"), row.get("last_status")
    if not isinstance(last, int) or last <= 0 or status not in STATUSES:
        return None
    message = row.get("last_error")
    return Confirmed(last, status, None if message is None else str(message),
                     str(row.get("owner")), failures(row.get("failed")))


def failures(value: Any) -> tuple[Failure, ...]:
    """The `failed` column's entries (a ledger from before it: none). Written only by
    `ledger.advance`; an entry of another form is skipped, not trusted."""
    if not isinstance(value, list):
        return ()
    found = []
    for item in value:
        if not isinstance(item, dict):
            continue
        mutation_id, status, message = item.get("id"), item.get("status"), item.get("message")
        if isinstance(mutation_id, int) and status in STATUSES and status != "ok":
            found.append(Failure(mutation_id, status, None if message is None else str(message)))
    return tuple(found)


async def read_confirmed(
    conn: psycopg.AsyncConnection[Any], binding: ClientBinding, stamp: Snapshot | None
) -> Confirmed | None:
    """The client's ledger row as `conn` sees it, when `stamp` sees that version too
    (always, inside the snapshot's own transaction); `stamp` None: as committed now."""
    cursor = await conn.execute(_READ, [binding.client_id, binding.owner])
    row = await cursor.fetchone()
    if row is None or row[1] <= 0:
        return None
    if stamp is not None and not stamp.visible(int(row[0])):
        return None  # written after the snapshot: the feed brings it at its own cursor
    return Confirmed(int(row[1]), row[2], row[3], binding.owner, failures(row[4]))
