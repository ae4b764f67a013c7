"""Follow queries into a SQLite replica, printing one line per server message.

    python -m examples.python_client --url http://127.0.0.1:8000 --token JWT \\
        --replica issues.sqlite \\
        --query "open=SELECT id, title, status FROM issues WHERE team_id = \\$1" --params 'open=[1]'

Stop with Ctrl-C; run it again (the --query flags may be left out) and it resumes
from the cursors in the replica.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from examples.python_client.client import SyncClient, SyncError
from examples.python_client.replica import Replica


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep:
            raise SystemExit(f"{flag} expects NAME=VALUE, got {value!r}")
        pairs[name] = text
    return pairs


def _print_message(name: str, message: Mapping[str, Any]) -> None:
    line = {
        "query": name,
        "changes": len(message.get("changes") or []),
        "cursor": message.get("cursor"),
        "upToDate": message.get("upToDate"),
        "mustRefetch": message.get("mustRefetch"),
    }
    print(json.dumps(line), flush=True)


async def _follow(args: argparse.Namespace) -> int:
    replica = Replica(args.replica)
    client = SyncClient(
        args.url, replica, token=args.token or os.environ.get("PGSIFT_TOKEN"),
        on_message=_print_message,
    )
    params = {name: json.loads(text) for name, text in _pairs(args.params, "--params").items()}
    queries = _pairs(args.query, "--query")
    for name, query in queries.items():
        client.add(name, query, params.get(name, []))
    if not queries:  # a restart: follow what the replica already holds
        for name in replica.names():
            state = replica.state(name)
            client.add(name, state.query, state.params)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, client.stop)
    try:
        if args.until_up_to_date:
            run = asyncio.create_task(client.run())
            waiter = asyncio.create_task(client.wait_up_to_date())
            await asyncio.wait([run, waiter], return_when=asyncio.FIRST_COMPLETED)
            client.stop()
            await run
        else:
            await client.run()
    except SyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
        replica.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.python_client", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the pgsift gateway")
    parser.add_argument("--token", help="a JWT (default: $PGSIFT_TOKEN)")
    parser.add_argument("--replica", required=True, help="SQLite file of the replica")
    parser.add_argument("--query", action="append", default=[], metavar="NAME=SQL")
    parser.add_argument("--params", action="append", default=[], metavar="NAME=JSON_ARRAY")
    parser.add_argument(
        "--until-up-to-date", action="store_true", help="exit once every query caught up"
    )
    args = parser.parse_args(argv)
    return asyncio.run(_follow(args))


if __name__ == "__main__":
    sys.exit(main())
