"""Write to the issue tracker like its users do, at a bounded rate, then stop.

    python -m examples.issue_tracker.writer --database-url URL [--rate 20] [--duration 60]

See `workload.Writer` for the API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from examples.issue_tracker.workload import Writer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.issue_tracker.writer", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rate", type=float, default=20.0, help="transactions/s; 0: unpaced")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, then stop")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    with Writer(args.database_url, args.seed) as writer:
        stats = writer.run(args.rate or None, args.duration, steps=args.steps)
    actions = ", ".join(f"{name} {count}" for name, count in sorted(stats.actions.items()))
    print(
        f"{stats.steps} transactions in {stats.seconds:.1f} s ({stats.retries} retried): {actions}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
