"""Batch loader benchmark: BatchLoader against one query per call, in the same run.

1,000 concurrent callers each ask for 5 random keys out of 200, then out of
100,000 (an `items` table of 100,000 rows in a throwaway Postgres, or the
database at --database-url, where the table is created and dropped again).

    .venv/bin/python bench/loader/run.py [--callers 1000] [--keys-per-call 5]
        [--key-spaces 200,100000] [--rounds 3] [--pool-size 4] [--window-ms 1]
        [--max-batch 500] [--database-url URL]

Each round starts every caller at once and measures each caller's latency from
that start to its rows. Every caller carries claims `{"team_ids": [t]}` (one of
ten teams) and the table's policy is `team_id = ANY(auth.team_ids)`: the
loader filters per caller, the naive way ANDs the rule into its own query.

Ways compared, each with its own pool of --pool-size connections: `naive` (one
`SELECT ... WHERE id = ANY(%s) AND team_id = ANY(%s)` per call), `batched`
(BatchLoader with its cache off: batching and in-flight sharing only) and
`batched+cache` (BatchLoader as the gateway runs it; the cache is warm from the
rounds before). Statements are per round, as issued by the client.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from pgsift.middleware.embedded import EmbeddedPostgres
from pgsift.middleware.loader import BatchLoader
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.policy import Policy

TABLE = "bench_loader_items"
COLUMNS = {"id": "int8", "team_id": "int4", "title": "text", "body": "text"}
CATALOG = Catalog.from_dict({f"public.{TABLE}": {"columns": COLUMNS, "primary_key": ["id"]}})
POLICIES = {
    f"public.{TABLE}": Policy.from_config(
        TABLE, {"row": "team_id = ANY(auth.team_ids)"}, catalog=CATALOG
    )
}
ROWS = 100_000
TEAMS = 10
NAIVE_SQL = (
    f"SELECT id, team_id, title, body FROM {TABLE} WHERE id = ANY(%s) AND team_id = ANY(%s)"
)

Call = Callable[["Ask"], Awaitable[list[Any]]]


@dataclass(frozen=True)
class Ask:
    keys: list[int]
    claims: dict[str, Any]


@dataclass(frozen=True)
class Result:
    way: str
    key_space: int
    statements: float  # per round
    p50_ms: float
    p99_ms: float
    calls_per_s: float


async def measure(call: Call, asks: Sequence[Ask]) -> tuple[list[float], float]:
    """Start every caller at once; their latencies (s) and the round's wall time (s)."""
    start = time.perf_counter()

    async def one(ask: Ask) -> float:
        rows = await call(ask)
        if len(rows) != len(ask.keys):
            raise RuntimeError("wrong number of rows")
        return time.perf_counter() - start

    latencies = await asyncio.gather(*(one(ask) for ask in asks))
    return list(latencies), time.perf_counter() - start


def summarize(
    way: str, key_space: int, statements: int, rounds: list[tuple[list[float], float]]
) -> Result:
    latencies = sorted(latency for round_latencies, _ in rounds for latency in round_latencies)
    wall = sum(seconds for _, seconds in rounds)
    return Result(
        way=way,
        key_space=key_space,
        statements=statements / len(rounds),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        calls_per_s=len(latencies) / wall,
    )


async def run_key_space(url: str, args: argparse.Namespace, key_space: int) -> list[Result]:
    chooser = random.Random(key_space)
    plans = [
        [
            Ask(
                chooser.sample(range(1, key_space + 1), args.keys_per_call),
                {"team_ids": [chooser.randrange(TEAMS)]},
            )
            for _ in range(args.callers)
        ]
        for _ in range(args.rounds)
    ]
    results: list[Result] = []

    async with open_pool(url, args.pool_size) as pool:
        naive_statements = 0

        async def naive(ask: Ask) -> list[Any]:
            nonlocal naive_statements
            naive_statements += 1
            conn: AsyncConnection[Any]
            async with pool.connection() as conn:
                cursor = await conn.execute(NAIVE_SQL, [ask.keys, ask.claims["team_ids"]])
                found = {row[0]: row for row in await cursor.fetchall()}
            return [found.get(key) for key in ask.keys]

        rounds = [await measure(naive, asks) for asks in plans]
        results.append(summarize("naive", key_space, naive_statements, rounds))

    for way, cache_rows in (("batched", 0), ("batched+cache", 10_000)):
        async with open_pool(url, args.pool_size) as pool:
            loader = BatchLoader(
                pool, catalog=CATALOG, policies=POLICIES, window_s=args.window_ms / 1000,
                max_batch=args.max_batch, cache_rows=cache_rows, timeout_s=30.0,
            )

            async def batched(ask: Ask, loader: BatchLoader = loader) -> list[Any]:
                return await loader.load_many(TABLE, ask.keys, ask.claims)

            rounds = [await measure(batched, asks) for asks in plans]
            results.append(summarize(way, key_space, loader.stats.statements, rounds))
            await loader.close()
    return results


@asynccontextmanager
async def open_pool(url: str, size: int) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """A pool with all `size` connections open, so that no way pays for connecting."""
    async with AsyncConnectionPool(
        url, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
    ) as pool:
        await pool.wait()
        yield pool


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"{args.callers} concurrent callers x {args.keys_per_call} random keys, "
        f"{args.rounds} rounds, pool of {args.pool_size}, window {args.window_ms:g} ms, "
        f"batches of at most {args.max_batch} keys"
    )
    header = (
        f"{'key space':>9}  {'way':<14} {'statements':>10} {'vs naive':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}"
    )
    print(header)
    print("-" * len(header))
    naive = {r.key_space: r for r in results if r.way == "naive"}
    for r in results:
        fewer = naive[r.key_space].statements / r.statements if r.statements else float("inf")
        print(
            f"{r.key_space:>9}  {r.way:<14} {r.statements:>10.1f} {fewer:>8.1f}x "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.calls_per_s:>9.0f}"
        )


def create_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id int8 PRIMARY KEY, team_id int4, title text, body text)"
        )
        conn.execute(
            f"INSERT INTO {TABLE} SELECT i, i % 10, 'item ' || i, repeat('x', 200) "
            f"FROM generate_series(1, {ROWS}) i"
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def drop_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--keys-per-call", type=int, default=5)
    parser.add_argument("--key-spaces", default="200,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--window-ms", type=float, default=1.0)
    parser.add_argument("--max-batch", type=int, default=500)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    key_spaces = [int(part) for part in args.key_spaces.split(",")]
    if max(key_spaces) > ROWS:
        parser.error(f"key spaces may be at most {ROWS}")

    with ExitStack() as stack:
        url = args.database_url or stack.enter_context(EmbeddedPostgres()).url
        create_table(url)
        try:
            results = asyncio.run(run_all(url, args, key_spaces))
        finally:
            drop_table(url)
    print_table(results, args)
    return 0


async def run_all(url: str, args: argparse.Namespace, key_spaces: list[int]) -> list[Result]:
    results: list[Result] = []
    for key_space in key_spaces:
        results.extend(await run_key_space(url, args, key_space))
    return results


if __name__ == "__main__":
    sys.exit(main())
