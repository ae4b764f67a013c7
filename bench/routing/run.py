"""Routing benchmark: RoutingIndex against naive evaluation of every shape.

Shapes are `team_id = k AND status IN (...)`, ten per team with ten distinct
status sets that all hold 'todo', plus a share of shapes with no equality term:
`title ILIKE '%x<i>%'` (distinct patterns, filed in the LIKE pattern index), or
with `--kind range` `priority > <i>` (nothing indexable: the scan list). Each
change is an UPDATE of a 'todo' issue of a random team (its title, or its status
to another one), so it touches the ten shapes of that team: updates, moves out.

    .venv/bin/python bench/routing/run.py [--sizes 100,1000,10000,100000]
        [--changes 3000] [--non-indexable 0.05] [--kind like|range] [--seed 1]

Prints, per number of registered shapes: µs per change and changes/s routed by
the index and by naive evaluation (measured in the same run, on the same
changes, with the same classification), and the traced memory per shape of the
shapes themselves and of the index on top of them.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.classify import PreparedChange, classify
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.shape import Shape

TABLE = "public.issues"
CATALOG = Catalog.from_dict(
    {
        TABLE: {
            "columns": {
                "id": "int8",
                "team_id": "int4",
                "status": "text",
                "title": "text",
                "priority": "int4",
            },
            "primary_key": ["id"],
        }
    }
)
STATUSES = ("backlog", "todo", "in_progress", "review", "done")
OTHERS = tuple(s for s in STATUSES if s != "todo")
SHAPES_PER_TEAM = 10
# Ten distinct status sets, each with 'todo': every shape of a team holds its todo issues.
STATUS_SETS = [
    ("todo", *combo) for n in range(len(OTHERS) + 1) for combo in itertools.combinations(OTHERS, n)
][:SHAPES_PER_TEAM]

Routed = list[tuple[int, Event]]


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    shapes: int
    patterned: int
    scanned: int
    index_us: float
    naive_us: float
    events: float
    shape_bytes: float
    index_bytes: float


# The non-indexable shapes: `like` ones go to the LIKE pattern index, `range` ones
# (nothing indexable at all) to the scan list.
OTHER_SHAPES: dict[str, tuple[str, Callable[[int], object]]] = {
    "like": ("SELECT id, title, status FROM issues WHERE title ILIKE $1", lambda i: f"%x{i}%"),
    "range": ("SELECT id, title, status FROM issues WHERE priority > $1", lambda i: i),
}


def build_shapes(size: int, non_indexable: float, kind: str) -> tuple[list[Shape], int]:
    """The shapes for `size`, and the number of teams they cover."""
    scanned = round(size * non_indexable)
    indexed = size - scanned
    shapes = []
    for i in range(indexed):
        team, j = divmod(i, SHAPES_PER_TEAM)
        statuses = STATUS_SETS[j]
        marks = ", ".join(f"${n + 2}" for n in range(len(statuses)))
        sql = (
            "SELECT id, team_id, title, status FROM issues"
            f" WHERE team_id = $1 AND status IN ({marks})"
        )
        shapes.append(Shape.parse(sql, params=[team, *statuses], catalog=CATALOG))
    sql, param = OTHER_SHAPES[kind]
    for i in range(scanned):
        shapes.append(Shape.parse(sql, params=[param(i)], catalog=CATALOG))
    return shapes, max(1, -(-indexed // SHAPES_PER_TEAM))


def build_changes(teams: int, count: int, rng: random.Random) -> list[Change]:
    changes = []
    for _ in range(count):
        id = rng.randrange(10**9)
        old = {"id": id, "team_id": rng.randrange(teams), "status": "todo",
               "title": f"issue {id}", "priority": 2}
        new = dict(old)
        if rng.random() < 0.7:
            new["title"] = f"issue {id} (edited)"
        else:
            new["status"] = rng.choice(OTHERS)
        changes.append(Change(TABLE, "update", {"id": id}, new, old))
    return changes


def naive_route(pairs: Sequence[tuple[Shape, int]], change: Change) -> Routed:
    """Classify the change for every registered shape."""
    prepared = PreparedChange(change, ("id",))
    out: Routed = []
    for shape, listener in pairs:
        for event in classify(shape, prepared):
            out.append((listener, event))
    return out


def timed(route: Callable[[Change], Routed], changes: Sequence[Change]) -> tuple[float, int]:
    """Seconds per change (best of three passes) and events per pass."""
    best, events = float("inf"), 0
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        events = sum(len(route(change)) for change in changes)
        best = min(best, time.perf_counter() - start)
    return best / len(changes), events


def measure(size: int, args: argparse.Namespace) -> Row:
    listeners = list(range(size))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    shapes, teams = build_shapes(size, args.non_indexable, args.kind)
    with_shapes = tracemalloc.get_traced_memory()[0]
    index: RoutingIndex[int] = RoutingIndex()
    for shape, listener in zip(shapes, listeners, strict=True):
        index.add(shape, listener)
    with_index = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    rng = random.Random(args.seed)
    changes = build_changes(teams, args.changes, rng)
    pairs = list(zip(shapes, listeners, strict=True))
    # Naive costs ~size evaluations per change: give it a comparable time budget.
    naive_changes = changes[: max(5, min(len(changes), 300_000 // size))]
    for change in naive_changes:
        got, want = index.route(change), naive_route(pairs, change)
        if Counter(map(repr, got)) != Counter(map(repr, want)):
            sys.exit(f"index and naive routing disagree on {change}")
    index_s, events = timed(index.route, changes)
    naive_s, _ = timed(lambda change: naive_route(pairs, change), naive_changes)
    return Row(
        shapes=size,
        patterned=index.stats().patterned,
        scanned=index.stats().scanned,
        index_us=index_s * 1e6,
        naive_us=naive_s * 1e6,
        events=events / len(changes),
        shape_bytes=(with_shapes - base) / size,
        index_bytes=(with_index - with_shapes) / size,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--changes", type=int, default=3000)
    parser.add_argument("--non-indexable", type=float, default=0.05)
    parser.add_argument("--kind", choices=sorted(OTHER_SHAPES), default="like")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    header = (
        f"{'shapes':>8} {'like':>5} {'scan':>5} {'events/chg':>10} "
        f"{'index µs/chg':>12} {'index chg/s':>11} "
        f"{'naive µs/chg':>12} {'naive chg/s':>11} {'speedup':>8} "
        f"{'shape B':>8} {'index B':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for size in sizes:
        row = measure(size, args)
        rows.append(row)
        print(
            f"{row.shapes:>8} {row.patterned:>5} {row.scanned:>5} {row.events:>10.1f} "
            f"{row.index_us:>12.1f} "
            f"{1e6 / row.index_us:>11.0f} {row.naive_us:>12.1f} {1e6 / row.naive_us:>11.0f} "
            f"{row.naive_us / row.index_us:>7.0f}x {row.shape_bytes:>8.0f} {row.index_bytes:>8.0f}",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    print()
    print("like / scan: shapes filed in the LIKE pattern index / evaluated for every change.")
    print("shape B / index B: traced memory per registered shape of the Shape objects / of the")
    print("RoutingIndex on top of them.")
    growth = last.index_us / first.index_us
    speedup = last.naive_us / last.index_us
    per_shape = last.shape_bytes + last.index_bytes
    print(f"cost at {last.shapes} vs {first.shapes} shapes: {growth:.1f}x (target <= 3x)")
    print(f"speedup over naive at {last.shapes} shapes: {speedup:.0f}x (target >= 100x)")
    print(
        f"memory per shape at {last.shapes}: {per_shape:.0f} B "
        f"(shape {last.shape_bytes:.0f} + index {last.index_bytes:.0f}; target < 2048 B)"
    )


if __name__ == "__main__":
    main()
