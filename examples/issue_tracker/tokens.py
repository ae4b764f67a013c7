"""Print the demo's sign-in tokens: one JSON line per user, `{"user": {...}, "token": "<jwt>"}`.

    python -m examples.issue_tracker.tokens --database-url URL [--limit 5] [--team 1]
    JWT=$(python -m examples.issue_tracker.tokens --database-url URL --team 1 --limit 1 \
          --token-only)

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
    parser.add_argument("--team", type=int, help="only members of this team")
    parser.add_argument("--token-only", action="store_true",
                        help="print just the tokens, one a line (for JWT=$(...))")
    args = parser.parse_args(argv)
    with psycopg.connect(args.database_url) as conn:
        users = demo_users(conn, limit=args.limit, team=args.team)
    if not users:
        print("no active demo user" + (f" in team {args.team}" if args.team else ""),
              file=sys.stderr)
        return 1
    for user in users:
        token = issue_token(user, secret=args.secret, ttl_s=args.ttl)
        print(token if args.token_only else json.dumps({"user": asdict(user), "token": token}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
