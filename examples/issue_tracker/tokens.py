"""Print the demo's sign-in tokens: one JSON line per user, `{"user": {...}, "token": "<jwt>"}`.

    python -m examples.issue_tracker.tokens --database-url URL [--limit 5]

See `auth` for the API.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

import psycopg

from examples.issue_tracker.auth import DEFAULT_TTL_S, DEMO_SECRET, demo_users, issue_token


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.issue_tracker.tokens", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--secret", default=DEMO_SECRET)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=DEFAULT_TTL_S, help="seconds")
    args = parser.parse_args(argv)
    with psycopg.connect(args.database_url) as conn:
        users = demo_users(conn, limit=args.limit)
    for user in users:
        token = issue_token(user, secret=args.secret, ttl_s=args.ttl)
        print(json.dumps({"user": asdict(user), "token": token}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
