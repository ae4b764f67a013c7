"""Many callers, few statements: batching across callers and sharing keys in flight."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import psycopg

from tests.middleware.loader.conftest import LoaderFactory, StatementLog, until_waiting_on_lock

ITEMS = 'FROM "public"."items"'


async def test_concurrent_callers_share_one_statement(
    make_loader: LoaderFactory, statement_log: StatementLog | None
) -> None:
    loader = await make_loader(window_s=0.05)
    chooser = random.Random(5)
    asks = [chooser.sample(range(1, 201), 5) for _ in range(100)]

    results = await asyncio.gather(*(loader.load_many("items", keys, {}) for keys in asks))

    for keys, rows in zip(asks, results, strict=True):
        assert [row["id"] if row else None for row in rows] == keys
        assert all(row is not None and row["title"] == f"item {row['id']}" for row in rows)
    assert loader.stats.statements == 1
    assert loader.stats.keys_fetched == len({k for keys in asks for k in keys})
    if statement_log is not None:
        assert statement_log.count(ITEMS) == 1


async def test_callers_on_separate_turns_share_the_window(
    make_loader: LoaderFactory, statement_log: StatementLog | None
) -> None:
    loader = await make_loader(window_s=0.5)

    async def later(delay_turns: int, key: int) -> dict[str, Any] | None:
        for _ in range(delay_turns):
            await asyncio.sleep(0)
        return await loader.load("items", key, {})

    rows = await asyncio.gather(*(later(turns, turns + 1) for turns in range(10)))

    assert [row["id"] for row in rows if row] == list(range(1, 11))
    assert loader.stats.statements == 1
    if statement_log is not None:
        assert statement_log.count(ITEMS) == 1


async def test_batch_cap_splits_statements(make_loader: LoaderFactory) -> None:
    loader = await make_loader(window_s=10.0, max_batch=50)

    # The window is far longer than the test: only the cap can send these batches.
    rows = await asyncio.wait_for(loader.load_many("items", list(range(1, 151)), {}), 60)

    assert [row["id"] for row in rows if row] == list(range(1, 151))
    assert loader.stats.statements == 3


async def test_key_in_flight_is_shared_by_later_waiters(
    make_loader: LoaderFactory, items_url: str, statement_log: StatementLog | None
) -> None:
    loader = await make_loader(window_s=0.0)
    with psycopg.connect(items_url) as blocker:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        first = asyncio.create_task(loader.load("items", 7, {}))
        await until_waiting_on_lock(items_url)
        # The first fetch is running (blocked in Postgres): these join it, send nothing.
        more = [asyncio.create_task(loader.load("items", 7, {})) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert loader.stats.statements == 1
        blocker.rollback()
    rows = await asyncio.gather(first, *more)

    assert all(row is not None and row["id"] == 7 for row in rows)
    assert loader.stats.statements == 1
    if statement_log is not None:
        assert statement_log.count(ITEMS) == 1


async def test_recent_rows_come_from_the_cache(make_loader: LoaderFactory) -> None:
    loader = await make_loader()
    first = await loader.load_many("items", [1, 2, 999], {})
    again = await loader.load_many("items", [2, 999, 1], {})

    assert again == [first[1], first[2], first[0]]
    assert loader.stats.statements == 1
    assert loader.stats.cache_hits == 3


async def test_cache_is_bounded(make_loader: LoaderFactory) -> None:
    loader = await make_loader(cache_rows=10)
    await loader.load_many("items", list(range(1, 51)), {})
    assert loader.cached_rows == 10


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader(window_s=0.0)
    with psycopg.connect(items_url) as blocker:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        leaving = asyncio.create_task(loader.load("items", 8, {}))
        staying = asyncio.create_task(loader.load("items", 8, {}, ["id"]))
        await until_waiting_on_lock(items_url)
        leaving.cancel()
        blocker.rollback()
    assert await staying == {"id": 8}
    assert leaving.cancelled()
    assert loader.stats.statements == 1
