"""Confirmations in the routing path (no servers): a transaction that writes a client's
ledger row reaches that client's listeners with `confirmed`, changes or not, only when
the row's owner is theirs; across chunks; the last version of a client wins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.reassembly import TxRouter
from pgsift.middleware.mutations.confirmed import ClientBinding, Confirmed
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.shape import Shape

CATALOG = Catalog.from_dict(
    {"public.t": {"columns": {"id": "int8", "team": "int4"}, "primary_key": ["id"]}}
)


@dataclass(frozen=True)
class Listener:
    name: str
    shape: Shape


def shape(team: int) -> Shape:
    return Shape.parse(f"SELECT id FROM t WHERE team = {team}", params=[], catalog=CATALOG,
                       claims={}, policies={})


def ledger(client: str, owner: str, last: int, status: str = "ok",
           error: str | None = None) -> Change:
    row: dict[str, Any] = {"client_id": client, "owner": owner, "last_mutation_id": last,
                           "last_status": status, "last_error": error}
    return Change("pgsift.clients", "update", {"client_id": client}, row, dict(row))


def row(id: int, team: int) -> Change:
    return Change("public.t", "insert", {"id": id}, {"id": id, "team": team}, None)


def entry(lsn: int, *changes: Change, chunk: int = 0, last: bool = True) -> FeedEntry:
    return FeedEntry(lsn, lsn, datetime.now(UTC), changes, chunk=chunk, last=last)


def test_the_clients_listeners_get_the_confirmation_with_or_without_changes() -> None:
    router: TxRouter[Listener] = TxRouter()
    mine_1, mine_2 = Listener("team 1", shape(1)), Listener("team 2", shape(2))
    unbound, thief = Listener("unbound", shape(1)), Listener("thief", shape(1))
    router.add(mine_1.shape, mine_1, ClientBinding("c1", "alice"))
    router.add(mine_2.shape, mine_2, ClientBinding("c1", "alice"))
    router.add(unbound.shape, unbound)
    router.add(thief.shape, thief, ClientBinding("c1", "bob"))  # names alice's client id

    routed = router.route(entry(10, ledger("c1", "alice", 7), row(1, 1)))
    assert routed is not None
    ok = Confirmed(7, "ok", None, "alice")
    assert (routed[mine_1].confirmed, len(routed[mine_1].changes)) == (ok, 1)
    assert (routed[mine_2].confirmed, routed[mine_2].changes) == (ok, ())
    assert routed[unbound].confirmed is None and len(routed[unbound].changes) == 1
    assert routed[thief].confirmed is None  # its change, never alice's outcome
    # Another client's transaction touches none of c1's listeners without changes.
    routed = router.route(entry(11, ledger("c2", "alice", 1)))
    assert routed == {}


def test_chunks_the_last_version_and_unbinding() -> None:
    router: TxRouter[Listener] = TxRouter()
    mine = Listener("mine", shape(1))
    router.add(mine.shape, mine, ClientBinding("c1", "alice"))
    assert router.route(entry(20, ledger("c1", "alice", 3), chunk=0, last=False)) is None
    routed = router.route(entry(20, ledger("c1", "alice", 4, "refused", "no"), row(2, 1),
                                chunk=1, last=True))
    assert routed is not None
    assert routed[mine].confirmed == Confirmed(4, "refused", "no", "alice")
    # A new client's row (id 0) confirms nothing.
    assert router.route(entry(21, ledger("c1", "alice", 0))) == {}
    router.remove(mine.shape, mine)
    assert router.route(entry(22, ledger("c1", "alice", 5))) == {}
    assert router.listeners_of(entry(23, ledger("c1", "alice", 6))) == set()
