"""Postgres down or slow: callers get a clean error in bounded time, pending work stays bounded."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pgsift.middleware.embedded.ports import free_port
from pgsift.middleware.errors import LoaderUnavailableError
from tests.conftest import PostgresServer
from tests.middleware.loader.conftest import LoaderFactory, until_waiting_on_lock


async def test_no_server_is_a_clean_error(make_loader: LoaderFactory) -> None:
    loader = await make_loader(
        url=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", timeout_s=0.5
    )
    with pytest.raises(LoaderUnavailableError, match=r"within 0\.5 s"):
        await loader.load("items", 1, {})


async def test_slow_statement_times_out_and_the_next_load_works(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader(timeout_s=0.5)
    with psycopg.connect(items_url) as blocker:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(LoaderUnavailableError, match=r"0\.5 s"):
            await loader.load("items", 1, {})
    # The loader is not stuck: the next batch goes through.
    assert await loader.load("items", 2, {}, ["id"]) == {"id": 2}


async def test_pending_keys_are_bounded(make_loader: LoaderFactory, items_url: str) -> None:
    loader = await make_loader(max_pending=10, window_s=0.0)
    with psycopg.connect(items_url) as blocker:
        blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        stuck = asyncio.create_task(loader.load_many("items", list(range(1, 9)), {}))
        await until_waiting_on_lock(items_url)
        with pytest.raises(LoaderUnavailableError, match="8 keys pending"):
            await loader.load_many("items", [20, 21, 22], {})
        # Keys already in flight cost nothing more and may still be joined.
        joined = asyncio.create_task(loader.load("items", 1, {}, ["id"]))
        blocker.rollback()
    assert len(await stuck) == 8
    assert await joined == {"id": 1}


async def test_survives_a_postgres_restart(
    make_loader: LoaderFactory, postgres_server: PostgresServer
) -> None:
    if postgres_server.embedded is None:
        pytest.skip("restarting needs the embedded Postgres")
    loader = await make_loader(timeout_s=10.0)
    assert await loader.load("items", 1, {}, ["id"]) == {"id": 1}

    postgres_server.embedded.restart()

    # The pool's idle connection died with the server; the pool checks and replaces it.
    assert await loader.load("items", 2, {}, ["id"]) == {"id": 2}


async def test_closed_loader_refuses(make_loader: LoaderFactory) -> None:
    loader = await make_loader()
    await loader.close()
    with pytest.raises(LoaderUnavailableError, match="closed"):
        await loader.load("items", 1, {})
