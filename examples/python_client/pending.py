"""The pending queue: local mutations, applied at once, sent in order, settled by the server.

    queue = PendingQueue(replica)
    mutation_id = queue.add("set_status", {"issue_id": "42", "status": "done"},
                            lambda w: w.patch("open", {"id": "42"}, {"status": "done"}))

`add` records the mutation and the optimistic function's writes in the replica
in one SQLite transaction (so a restart loses neither), and they show in
`replica.rows()` at once. Writes are recorded as effects (put a row, patch
fields, delete a key), not as code: a restart needs no function to replay them,
and a patch replays onto whatever the server row has become. `unsent()` is what
to send next (in id order, never twice once `acknowledge`d); a `Confirmation`
(`Replica.apply(..., confirmed=...)`) settles them, and `overlay.rebase` keeps
each query's layer equal to its server rows plus the writes still unconfirmed
there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from examples.python_client import overlay
from examples.python_client.replica import Replica, key_text, wire_values


@dataclass(frozen=True)
class PendingMutation:
    """A mutation still in the queue."""

    id: int
    name: str
    args: dict[str, Any]
    acked: bool
    status: str | None
    message: str | None
    confirmed: bool  # a sync message confirmed it
    confirmed_at: str | None  # that message's cursor


class LocalWrites:
    """What an optimistic function does to the replica, recorded as effects.

    Values may be Python values or wire values; both are stored in the wire form
    of the query's column types. A row the server will create can use a
    temporary key that matches no server value (`{"id": "tmp-1"}` for a bigint
    id): it disappears when the mutation is confirmed, as the real row arrives.
    """

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.recorded: list[dict[str, Any]] = []

    def row(self, query: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row of `key` in `query` as the app sees it now."""
        return self.replica.row(query, key)

    def put(self, query: str, row: Mapping[str, Any], *, key: Sequence[str] = ("id",)) -> None:
        """Insert or replace a whole row; `key` names its primary-key columns."""
        missing = [column for column in key if column not in row]
        if missing:
            raise ValueError(f"put into {query}: the row lacks key column(s) {missing}")
        values = wire_values(self._types(query), row)
        self._record(query, "put", {c: row[c] for c in key}, row=values)

    def patch(self, query: str, key: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        """Change some columns of the row of `key` (nothing if it is not there)."""
        self._record(query, "patch", key, fields=wire_values(self._types(query), fields))

    def delete(self, query: str, key: Mapping[str, Any]) -> None:
        """Remove the row of `key` from `query`."""
        self._record(query, "delete", key)

    def _types(self, query: str) -> dict[str, str]:
        return self.replica.types(query)

    def _record(self, query: str, op: str, key: Mapping[str, Any], **values: Any) -> None:
        self.replica.state(query)  # KeyError for a query never registered
        text = key_text(wire_values(self._types(query), key))
        self.recorded.append({"query": query, "op": op, "key": text, **values})


Optimistic = Callable[[LocalWrites], object]


class PendingQueue:
    """The mutations of this replica's client that the server has not settled yet."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        with replica.transaction() as db:
            db.execute(
                "INSERT INTO sync_client (id, client_id, next_mutation_id) VALUES (1, ?, 1)"
                " ON CONFLICT (id) DO NOTHING",
                [uuid.uuid4().hex],
            )
        self.client_id: str = self._one("SELECT client_id FROM sync_client")

    def add(
        self, name: str, args: Mapping[str, Any], optimistic: Optimistic | None = None
    ) -> int:
        """Queue mutation `name(args)`, applying `optimistic`'s writes at once; its id."""
        writes = LocalWrites(self.replica)
        if optimistic is not None:
            optimistic(writes)
        text = json.dumps(dict(args))  # a value JSON cannot hold fails here, not when sent
        with self.replica.transaction() as db:
            (mutation_id,) = db.execute(
                "UPDATE sync_client SET next_mutation_id = next_mutation_id + 1"
                " RETURNING next_mutation_id - 1"
            ).fetchone()
            db.execute(
                "INSERT INTO pending_mutations (id, name, args, writes) VALUES (?, ?, ?, ?)",
                [mutation_id, name, text, json.dumps(writes.recorded, ensure_ascii=False)],
            )
            for query in {write["query"] for write in writes.recorded}:
                overlay.rebase(db, query)
        return int(mutation_id)

    def unsent(self, limit: int) -> list[PendingMutation]:
        """The first `limit` mutations the server has not answered, in id order."""
        return self._select("WHERE acked = 0 ORDER BY id LIMIT ?", [limit])

    def pending(self) -> list[PendingMutation]:
        """Every mutation still in the queue, in id order."""
        return self._select("ORDER BY id", [])

    def acknowledge(self, results: Iterable[Mapping[str, Any]]) -> list[overlay.Settled]:
        """Record the server's answer (`{id, status, message?}` each); the refusals in it.

        A refused or failed mutation changed nothing on the server, so its writes
        leave the layer now; the others wait for their confirmation.
        """
        settled = []
        with self.replica.transaction() as db:
            touched: set[str] = set()
            for result in results:
                status = str(result["status"])
                found = db.execute(
                    "UPDATE pending_mutations SET acked = 1,"
                    " status = CASE WHEN status IN ('refused', 'error') THEN status ELSE ? END,"
                    " message = coalesce(message, ?) WHERE id = ? AND acked = 0"
                    " RETURNING name, args, writes",
                    [status, result.get("message"), int(result["id"])],
                ).fetchone()
                if found is not None and status in overlay.WITHOUT_EFFECT:
                    touched |= overlay.queries_of(found[2])
                    settled.append(overlay.Settled(
                        int(result["id"]), found[0], json.loads(found[1]), status,
                        result.get("message"),
                    ))
            for query in touched:
                overlay.rebase(db, query)
            overlay.prune(db)
        return settled

    def acknowledge_through(self, last_mutation_id: int) -> None:
        """The server has run every mutation up to `last_mutation_id` (what a bound
        connection's `connection_ack` says): never send those again. Their outcomes
        and their writes' release come with the `sync` messages that confirm them."""
        with self.replica.transaction() as db:
            db.execute(
                "UPDATE pending_mutations SET acked = 1 WHERE id <= ? AND acked = 0",
                [last_mutation_id],
            )

    def prune(self) -> None:
        """Forget what no query needs any more (after a query's cursor moved)."""
        with self.replica.transaction() as db:
            overlay.prune(db)

    def _select(self, where: str, params: list[Any]) -> list[PendingMutation]:
        rows = self.replica.db.execute(
            "SELECT id, name, args, acked, status, message, confirmed, confirmed_at"
            f" FROM pending_mutations {where}",
            params,
        ).fetchall()
        return [
            PendingMutation(row[0], row[1], json.loads(row[2]), bool(row[3]), row[4], row[5],
                            bool(row[6]), row[7])
            for row in rows
        ]

    def _one(self, sql: str) -> str:
        return str(self.replica.db.execute(sql).fetchone()[0])
