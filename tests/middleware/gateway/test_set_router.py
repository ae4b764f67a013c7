"""The tailer's relational pass without servers: order within a transaction, chunks, reset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.registry import SetRegistry

CATALOG = Catalog.from_dict(
    {
        "issues": {"columns": {"id": "int8", "team_id": "int4", "title": "text"},
                   "primary_key": ["id"]},
        "members": {"columns": {"id": "int8", "team_id": "int4", "user_id": "text"},
                    "primary_key": ["id"]},
    }
)  # fmt: skip
MINE = (
    "SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM members WHERE user_id = $1)"
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Listener:
    shape: Shape


def member(id_: int, team: int) -> Change:
    row = {"id": id_, "team_id": team, "user_id": "u1"}
    return Change("public.members", "insert", {"id": id_}, row, None)


def issue_moved(id_: int, old_team: int, new_team: int) -> Change:
    old = {"id": id_, "team_id": old_team, "title": "t"}
    return Change("public.issues", "update", {"id": id_}, {**old, "team_id": new_team}, old)


def entry(lsn: int, *changes: Change, chunk: int = 0, last: bool = True) -> FeedEntry:
    return FeedEntry(lsn=lsn, xid=lsn, commit_time=NOW, changes=changes, chunk=chunk, last=last)


def attached() -> tuple[SetRegistry, SetRouter[Listener], Listener]:
    shape = Shape.parse(MINE, ["u1"], catalog=CATALOG)
    registry = SetRegistry()
    (inner,) = registry.acquire(shape.inner_sets)
    assert registry.load(inner, [{"id": 1, "team_id": 1, "user_id": "u1"}])
    router: SetRouter[Listener] = SetRouter(registry)
    listener = Listener(shape)
    router.add(shape, listener)
    return registry, router, listener


def test_an_outer_row_is_judged_with_the_sets_after_the_whole_transaction() -> None:
    _, router, listener = attached()
    # Chunk 0 moves issue 7 to team 2; chunk 1 makes u1 a member of team 2.
    assert router.route(entry(10, issue_moved(7, 5, 2), last=False)) is None
    routed = router.route(entry(10, member(2, 2), chunk=1))
    assert routed is not None
    result = routed[listener]
    assert [(c.op, c.key) for c in result.changes] == [("INSERT", {"id": "7"})]
    # Team 2 entered the set: its other issues move in by a region read.
    assert [m.inserts_only for m in result.moves] == [True]


def test_a_pending_set_skips_what_its_snapshot_saw() -> None:
    registry, router, listener = attached()
    (inner,) = listener.shape.inner_sets
    router.add_pending([inner.key], Snapshot.parse("20:30:25"), NOW.timestamp())
    router.route(entry(19, member(3, 3)))  # seen by the snapshot: already in the set
    assert 3 not in registry.state(inner.key).members
    routed = router.route(entry(25, member(4, 4)))  # in progress at the snapshot: applied
    assert routed is not None and routed[listener].moves
    assert 4 in registry.state(inner.key).members


def test_a_reset_drops_the_sets_and_their_shapes() -> None:
    registry, router, listener = attached()
    router.reset()
    assert not registry.materialized(listener.shape.inner_sets[0].key)
    # Routing goes on without the dropped shape; attaching again loads the set.
    assert router.route(entry(11, issue_moved(7, 1, 1), member(2, 2))) == {}
    assert registry.acquire(listener.shape.inner_sets) == listener.shape.inner_sets


def issue_edit(id_: int, old_team: int, new_team: int, title: str) -> Change:
    old = {"id": id_, "team_id": old_team, "title": "t"}
    new = {"id": id_, "team_id": new_team, "title": title}
    return Change("public.issues", "update", {"id": id_}, new, old)


def grouped(max_changes: int | None = None) -> tuple[SetRouter[Listener], dict[int, Listener]]:
    """u1..u4 in team 1, u1 and u2 in team 2: one shape each, one group per team."""
    rows = [{"id": n, "team_id": 1, "user_id": f"u{n}"} for n in range(1, 5)]
    rows += [{"id": 10 + n, "team_id": 2, "user_id": f"u{n}"} for n in (1, 2)]
    registry = SetRegistry()
    router: SetRouter[Listener] = SetRouter(registry, max_changes)
    listeners = {}
    for n in range(1, 5):
        shape = Shape.parse(MINE, [f"u{n}"], catalog=CATALOG)
        (inner,) = registry.acquire(shape.inner_sets)
        assert registry.load(inner, [row for row in rows if inner.matches(row)])
        listeners[n] = Listener(shape)
        router.add(shape, listeners[n])
    return router, listeners


def test_a_group_is_finished_once_and_a_held_listener_apart() -> None:
    router, listeners = grouped()
    # A title edit in team 1: the same wire change, converted once, for each member.
    routed = router.route(entry(10, issue_edit(7, 1, 1, "new")))
    assert routed is not None and set(routed) == set(listeners.values())
    changes = [routed[listener].changes for listener in listeners.values()]
    assert all([(c.op, c.key) for c in got] == [("UPDATE", {"id": "7"})] for got in changes)
    assert all(got[0] is changes[0][0] for got in changes)
    # To team 2, title unchanged: u1 and u2 keep it as it is, u3 and u4 lose it.
    routed = router.route(entry(11, issue_edit(8, 1, 2, "t")))
    assert routed is not None
    assert {listener: [c.op for c in r.changes] for listener, r in routed.items()} == {
        listeners[3]: ["DELETE"],
        listeners[4]: ["DELETE"],
    }
    # u3 joins team 3: its move's region holds team 3 until its snapshot is taken, so a
    # title edit there reaches u3 as if it held the row (an upsert), not as the group's
    # update -- and only once.
    join = {"id": 20, "team_id": 3, "user_id": "u3"}
    routed = router.route(entry(12, Change("public.members", "insert", {"id": 20}, join, None)))
    assert routed is not None and routed[listeners[3]].moves
    routed = router.route(entry(13, issue_edit(9, 3, 3, "new")))
    assert routed is not None
    assert {listener: [c.op for c in r.changes] for listener, r in routed.items()} == {
        listeners[3]: ["INSERT"]
    }
    assert router.routed_changes == 4 + 2 + 1


def test_a_group_past_max_changes_refetches() -> None:
    router, listeners = grouped(max_changes=1)
    # One change, within the bound of outer changes, but it moves its row to another
    # key: a delete and an insert for each member of team 1, past the bound.
    old = {"id": 7, "team_id": 1, "title": "t"}
    rekeyed = Change("public.issues", "update", {"id": 7}, {**old, "id": 70}, old)
    routed = router.route(entry(10, rekeyed))
    assert routed is not None
    assert {n: (r.refetch, r.changes) for n, r in routed.items()} == {
        listener: (True, []) for listener in listeners.values()
    }


NESTED = (
    "SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM members WHERE"
    " user_id IN (SELECT user_id FROM members WHERE team_id = $1))"
)


def joins(id_: int, team: int, user: str) -> Change:
    row = {"id": id_, "team_id": team, "user_id": user}
    return Change("public.members", "insert", {"id": id_}, row, None)


def nested() -> tuple[SetRegistry, SetRouter[Listener], Listener, Listener]:
    """u1 in team 1, u2 in team 3: a nested listener (the teams of team 1's users) and a
    first-level one (u1's teams) share the members table."""
    registry = SetRegistry()
    router: SetRouter[Listener] = SetRouter(registry)
    rows = [{"id": 1, "team_id": 1, "user_id": "u1"}, {"id": 2, "team_id": 3, "user_id": "u2"}]
    listeners = []
    for query, param in ((NESTED, 1), (MINE, "u1")):
        shape = Shape.parse(query, [param], catalog=CATALOG)
        needed = registry.acquire(shape.inner_sets)
        for mirror in registry.needed_mirrors(needed):  # the members, for the nested set
            assert registry.load_mirror(mirror, rows)
        for inner in needed:  # deepest first
            assert registry.load(inner, [row for row in rows if inner.matches(row, registry)])
        listeners.append(Listener(shape))
        router.add(shape, listeners[-1])
    return registry, router, listeners[0], listeners[1]


def test_a_set_read_by_another_changing_moves_the_readers_rows() -> None:
    registry, router, deep, first = nested()
    (top,) = deep.shape.inner_sets
    (users,) = top.dependencies
    assert registry.state(top.key).members == {1}
    # u1 joins team 2: the set of team 1's users keeps its membership; the top set gains
    # team 2 by its own row and moves issues in, as for one level.
    routed = router.route(entry(10, joins(3, 2, "u1")))
    assert routed is not None and not routed[deep].refetch and routed[deep].moves
    assert registry.state(top.key).members == {1, 2}
    # u2 joins team 1: team 1's users gain u2, so the top set judges u2's rows again and
    # gains team 3 (u2's other team): its issues move in; u1's own teams did not change.
    routed = router.route(entry(11, joins(4, 1, "u2")))
    assert routed is not None and not routed[deep].refetch and first not in routed
    assert registry.state(users.key).members == {"u1", "u2"}
    assert registry.state(top.key).members == {1, 2, 3}
    (move,) = routed[deep].moves
    assert move.inserts_only and move.in_region({"id": 7, "team_id": 3, "title": "t"})
    assert not move.in_region({"id": 8, "team_id": 2, "title": "t"})
    # u2 leaves team 1: team 3 leaves the top set, and its issues move out.
    leaves = Change("public.members", "delete", {"id": 4}, None, None)
    routed = router.route(entry(12, leaves))
    assert routed is not None and not routed[deep].refetch
    (move,) = routed[deep].moves
    assert not move.inserts_only and registry.state(top.key).members == {1, 2}
    # Outer rows are routed with the nested set as it is now.
    routed = router.route(entry(13, issue_moved(7, 5, 2)))
    assert routed is not None and set(routed) == {deep, first}
    assert registry.rejudged == 2


def test_a_pending_reader_skips_what_its_snapshot_saw_and_follows_the_rest() -> None:
    registry, router, deep, _ = nested()
    (top,) = deep.shape.inner_sets
    router.add_pending([top.key], Snapshot.parse("20:30:25"), NOW.timestamp())
    # Seen by the snapshot the top set was loaded from: it holds the change already.
    routed = router.route(entry(19, joins(3, 4, "u1")))
    assert routed is not None and deep not in routed
    assert registry.state(top.key).members == {1}
    # Not seen (in progress at the snapshot): u2 joins team 1, and the top set, judged
    # again, gains u2's team 3; its issues move in.
    routed = router.route(entry(25, joins(4, 1, "u2")))
    assert routed is not None and not routed[deep].refetch and routed[deep].moves
    assert registry.state(top.key).members == {1, 3}


def test_a_pending_reader_judged_on_both_sides_of_its_snapshot_is_dropped() -> None:
    """A transaction the snapshot saw after one it did not (their visibility order
    differs from the feed's): the set was judged with images of both sides, so it is
    dropped and its listener refetches."""
    registry, router, deep, _ = nested()
    (top,) = deep.shape.inner_sets
    router.add_pending([top.key], Snapshot.parse("20:30:25"), NOW.timestamp())
    routed = router.route(entry(25, joins(4, 1, "u2")))
    assert routed is not None and routed[deep].moves and registry.materialized(top.key)
    routed = router.route(entry(26, joins(5, 2, "u3")))  # seen by the snapshot
    assert routed is not None and routed[deep].refetch
    assert not registry.materialized(top.key)
