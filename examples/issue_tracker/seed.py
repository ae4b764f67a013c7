"""Fill the issue tracker with a deterministic data set of any size.

    python -m examples.issue_tracker.seed --database-url URL --issues 100000 [--seed 1] [--reset]

Creates the schema when the database has none. See `dataset.seed` for the API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg

from examples.issue_tracker.dataset import seed
from examples.issue_tracker.schema import apply_schema, drop_schema
from pgsift.middleware.progress import ProgressDisplay


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.issue_tracker.seed", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--issues", type=int, default=10_000, help="10,000 to 1,000,000 or any")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--comments-per-issue", type=float, default=2.0)
    parser.add_argument(
        "--reset", action="store_true", help="drop the issue tracker's tables first"
    )
    args = parser.parse_args(argv)
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        if args.reset:
            drop_schema(conn)
        if conn.execute("SELECT to_regclass('issues')").fetchone() == (None,):
            apply_schema(conn)
        with ProgressDisplay(file=sys.stderr) as progress:
            task = progress.add("seed", total=args.issues, unit="issues")
            result = seed(
                conn, issues=args.issues, seed=args.seed,
                comments_per_issue=args.comments_per_issue,
                on_progress=lambda done: progress.update(task, done),
            )
            progress.finish(task)
    counts = ", ".join(f"{table} {count:,}" for table, count in result.counts.items())
    print(f"seeded in {result.seconds:.1f} s: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
