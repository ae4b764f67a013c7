"""Relational subscriptions: the benchmark of issue 12, one table.

Issues over 1,000 teams; subscriptions
`SELECT id, title FROM issues WHERE team_id IN (SELECT team_id FROM memberships
WHERE user_id = $1)`, one per user (a member of three teams).

* (a) outer changes routed through the inner sets (pure core, `core.py`): µs per
  change at 100 and at 10,000 subscriptions. Target: within 2x. A change
  reaches every subscriber of its team (0.4 at 100, ~40 at 10,000), so the
  lookup alone, a change reaching nobody, is shown too.
* (b) a membership insert that moves `moved` (1,000) issues into one
  subscription: commit -> the last row at a websocket client (`live.py`, real
  capture, Redis, gateway). Target: under 200 ms. The move-out and a plain
  transaction of as many rows (the delivery path without a move) for scale.
* (c) the same workload (rounds of: a move-in, `edits` issue edits, a move-out)
  answered by a live-query server (`requery.py`, a process like the gateway):
  on every change it re-runs the query of every subscription reading the
  changed table, `--requery-batch` subscriptions per statement (Hasura's
  multiplexing, 100), diffs and sends the diffs to its websocket clients; in
  the same run, the same clients' measure: Postgres statements
  (`pg_stat_statements`, per role) and p50 / p99 / max per change. Targets: at
  least 10x fewer statements, lower p99. With 100 subscriptions one statement
  re-runs them all, so the statements are a measure of the subscriptions.
* (d) with `--nested`, afterwards: `nested.py` (its own table), subscriptions
  nested two levels where a change at the deepest table moves issues; its
  defaults, but for the options below that it shares (`--moved` is not passed
  on: its default is 200). Alone: `bench/relational/nested.py`.

    .venv/bin/python bench/relational/run.py [--sizes 100,10000] [--changes 3000]
        [--subscriptions 100] [--rounds 10] [--edits 20] [--moved 1000]
        [--teams 1000] [--seed 1] [--requery-batch 100] [--statements] [--nested]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import core
import live


def percentiles(timings: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and max in ms."""
    ordered = sorted(timings)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


def shown(timings: Sequence[float]) -> str:
    return "{:.0f} / {:.0f} / {:.0f}".format(*percentiles(timings))


def within(ratio: float) -> str:
    return "<= 2x " + ("met" if ratio <= 2 else "NOT met")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--changes", type=int, default=3000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--moved", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--requery-batch", type=int, default=100,
                        help="subscriptions per statement of the re-query server (Hasura's 100)")
    parser.add_argument(
        "--statements", action="store_true", help="print each side's most frequent statements"
    )
    parser.add_argument("--nested", action="store_true", help="then nested.py's bench, (d)")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",") if s]  # "": (b) and (c) only
    routed = [core.measure(size, args) for size in sizes]
    pgsift, requery = live.run(args)

    rows: list[tuple[str, str, str, str]] = []
    for row in routed:
        rows.append((f"(a) {row.subscriptions:,} subs: µs/change ({row.events:.1f} events)",
                     f"{row.index_us:.1f}", f"naive {row.naive_us:.1f}", ""))  # fmt: skip
        rows.append(("    µs/change reaching nobody (the lookup)", f"{row.miss_us:.1f}", "", ""))
    if len(routed) > 1:
        first, last = routed[0], routed[-1]
        ratio, lookup = last.index_us / first.index_us, last.miss_us / first.miss_us
        events = last.events / max(first.events, 1e-9)
        rows.append((f"(a) {sizes[-1]:,} vs {sizes[0]:,} subs: µs/change", f"{ratio:.2f}x",
                     f"events {events:.0f}x", within(ratio)))  # fmt: skip
        rows.append(("    µs/change reaching nobody", f"{lookup:.2f}x", "", within(lookup)))
    names = {"in": "(b) move-in", "out": "    move-out", "edit": "    issue edit",
             "plain": "    plain tx (scale)"}  # fmt: skip
    for kind, name in names.items():
        p99 = percentiles(pgsift.latencies[kind])[1]
        base = requery.latencies.get(kind)
        other = "" if base is None else shown(base)
        target = ""
        if kind == "in":
            target = "< 200 ms " + ("met" if p99 < 200 else "NOT met") + " (p99)"
        rows.append((f"{name} {args.moved if kind != 'edit' else 1} rows p50/p99/max ms",
                     shown(pgsift.latencies[kind]), other, target))  # fmt: skip
    every = [t for kind in ("in", "edit", "out") for t in pgsift.latencies[kind]]
    base_every = [t for kind in ("in", "edit", "out") for t in requery.latencies[kind]]
    p99, base_p99 = percentiles(every)[1], percentiles(base_every)[1]
    rows.append(("(c) the workload's changes p50/p99/max ms", shown(every), shown(base_every),
                 "lower p99 " + ("met" if p99 < base_p99 else "NOT met")))  # fmt: skip
    fewer = requery.statements / max(pgsift.statements, 1)
    rows.append(("(c) Postgres statements, the workload", f"{pgsift.statements:,}",
                 f"{requery.statements:,}",
                 f">= 10x fewer: {fewer:.1f}x " + ("met" if fewer >= 10 else "NOT met")))

    print(f"\n{args.subscriptions} live subscriptions, {args.rounds} rounds of a move of "
          f"{args.moved} rows in, {args.edits} issue edits, the move out; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; re-query: a server re-running "
          f"every subscription reading the changed table, {args.requery_batch} per statement, "
          "diffs over websockets (requery.py)")  # fmt: skip
    header = f"{'measure':<46} {'pgsift':>16} {'re-query':>18}  target"
    print(header)
    print("-" * (len(header) + 20))
    for name, ours, theirs, target in rows:
        print(f"{name:<46} {ours:>16} {theirs:>18}  {target}")
    if args.statements:
        for label, results in (("pgsift", pgsift), ("re-query", requery)):
            print(f"\n{label}: most frequent statements")
            for calls, query in results.top:
                print(f"{calls:>7}  {' '.join(query.split())[:100]}")
    if args.nested:
        nested_main(args)


def nested_main(args: argparse.Namespace) -> None:
    """(d): `nested.py` with its defaults, but for the options this bench shares."""
    import nested  # here: nested imports this module

    shared = ("subscriptions", "rounds", "edits", "seed", "requery_batch", "statements")
    nested_args = nested.parser().parse_args([])
    for name in shared:
        setattr(nested_args, name, getattr(args, name))
    if not nested.report(nested_args, *nested.run(nested_args)):
        raise SystemExit("a copy differs from SELECT of its query")


if __name__ == "__main__":
    main()
