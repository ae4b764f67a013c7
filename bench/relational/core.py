"""Relational routing, pure core (part (a) of `bench/relational/run.py`).

Issues over 1,000 teams; each subscriber is a user who is a member of three
random teams and subscribes to
`SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM memberships
WHERE user_id = $1)`: one inner set per user, materialized in a `SetRegistry`,
the shapes filed under their sets' values in a `RoutingIndex`.

* outer: an UPDATE of an issue of a random team (its title, or its team), routed
  by the index (`route_groups`, as the gateway routes: one verdict per group of
  subscriptions holding the team, `set_groups`), and by naive evaluation of every
  shape with the same sets (measured in the same run, on the same changes,
  checked equal once the groups are expanded to their listeners); and the same
  UPDATEs in teams no subscriber is a member of (`miss`: the lookup alone);
* inner: one membership inserted and deleted (one transaction each): the
  registry's delta, widen / narrow of the index, and the moves it asks for.

The issue's target for outer changes: within 2x between 100 and 10,000
subscriptions. A change reaches every subscriber of its team, so the events per
change grow with the subscriptions (30 per team at 10,000); the per-event cost
and the cost of a change reaching nobody are printed to separate the lookup
from the delivery.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, classify
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.sets import BeforeView
from pgsift.subscriptions.shape import Shape

CATALOG = Catalog.from_dict(
    {
        "issues": {
            "columns": {"id": "int8", "team_id": "int4", "title": "text"},
            "primary_key": ["id"],
        },
        "memberships": {
            "columns": {"team_id": "int4", "user_id": "text"},
            "primary_key": ["team_id", "user_id"],
        },
    }
)
QUERY = (
    "SELECT id, title FROM issues WHERE team_id IN "
    "(SELECT team_id FROM memberships WHERE user_id = $1)"
)
TEAMS_PER_USER = 3
Routed = list[tuple[int, Event]]


@dataclass
class Row:
    subscriptions: int
    set_filed: int
    events: float
    index_us: float
    miss_us: float
    naive_us: float
    inner_us: float


def build(size: int, teams: int, rng: random.Random) -> tuple[SetRegistry, RoutingIndex[int],
                                                             list[Shape]]:  # fmt: skip
    registry = SetRegistry()
    index: RoutingIndex[int] = RoutingIndex(registry)
    shapes = []
    for user in range(size):
        shape = Shape.parse(QUERY, [f"u{user}"], catalog=CATALOG)
        rows = [{"team_id": t, "user_id": f"u{user}"}
                for t in rng.sample(range(teams), TEAMS_PER_USER)]  # fmt: skip
        for inner in registry.acquire(shape.inner_sets):
            registry.load(inner, rows)
        index.add(shape, user)
        shapes.append(shape)
    return registry, index, shapes


def build_changes(teams: int, count: int, rng: random.Random, offset: int = 0) -> list[Change]:
    """UPDATEs of issues of teams `offset` .. `offset + teams`."""
    changes = []
    for _ in range(count):
        id_ = rng.randrange(10**9)
        old = {"id": id_, "team_id": offset + rng.randrange(teams), "title": f"issue {id_}"}
        new = dict(old)
        if rng.random() < 0.7:
            new["title"] = f"issue {id_} (edited)"
        else:
            new["team_id"] = offset + rng.randrange(teams)
        changes.append(Change("public.issues", "update", {"id": id_}, new, old))
    return changes


def naive(shapes: Sequence[Shape], registry: SetRegistry, change: Change) -> Routed:
    prepared = PreparedChange(change, ("id",))
    return [
        (listener, event)
        for listener, shape in enumerate(shapes)
        for event in classify(shape, prepared, registry)
    ]


def timed(route: Callable[[Change], Sized], changes: Sequence[Change]) -> tuple[float, int]:
    """Seconds per change (best of three passes) and results per pass."""
    best, results = float("inf"), 0
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        results = sum(len(route(change)) for change in changes)
        best = min(best, time.perf_counter() - start)
    return best / len(changes), results


def grouped(index: RoutingIndex[int]) -> Callable[[Change], list[object]]:
    """Routing as the gateway asks for it: events per listener, and verdicts per group."""

    def route(change: Change) -> list[object]:
        singles, reached = index.route_groups(change)
        return [*singles, *reached]

    return route


def inner_cost(registry: SetRegistry, index: RoutingIndex[int], teams: int, size: int,
               rng: random.Random, count: int = 500) -> float:  # fmt: skip
    """Seconds per membership change: registry delta, widen / narrow, moves planned."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        for _ in range(count):
            row = {"team_id": rng.randrange(teams), "user_id": f"u{rng.randrange(size)}"}
            for op in ("insert", "delete"):
                change = Change("public.memberships", op, dict(row),
                                row if op == "insert" else None, None)  # fmt: skip
                deltas = registry.apply([change])
                BeforeView(registry, deltas)
                for delta in deltas:
                    index.widen(delta)
                for delta in deltas:
                    index.narrow(delta)
                    index.moves(delta)
        best = min(best, time.perf_counter() - start)
    return best / (2 * count)


def measure(size: int, args: argparse.Namespace) -> Row:
    rng = random.Random(args.seed)
    registry, index, shapes = build(size, args.teams, rng)
    changes = build_changes(args.teams, args.changes, rng)
    naive_changes = changes[: max(5, min(len(changes), 300_000 // size))]
    for change in naive_changes:
        got, want = index.route(change), naive(shapes, registry, change)
        if Counter(map(repr, got)) != Counter(map(repr, want)):
            sys.exit(f"index and naive routing disagree on {change}")
    events = sum(len(index.route(change)) for change in changes)
    index_s, _ = timed(grouped(index), changes)
    misses = build_changes(args.teams, args.changes, rng, offset=args.teams)
    miss_s, missed = timed(grouped(index), misses)
    assert missed == 0
    naive_s, _ = timed(lambda change: naive(shapes, registry, change), naive_changes)
    return Row(
        subscriptions=size,
        set_filed=index.stats().set_filed,
        events=events / len(changes),
        index_us=index_s * 1e6,
        miss_us=miss_s * 1e6,
        naive_us=naive_s * 1e6,
        inner_us=inner_cost(registry, index, args.teams, size, rng) * 1e6,
    )
