"""A relational client as clients are: told to refetch, it starts its copy over.

Nested inner selects are kept exact by dropping the sets that read a set whose
membership changed (docs/relational.md, "Nested sets"): their subscribers get
`mustRefetch`. These helpers follow a query the way the Python client's users
do (drop the copy and the cursor, subscribe again), so tests can compare the
copy with `SELECT` after every step whatever path the gateway took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.gateway.client import LocalCopy, SyncConnection
from tests.middleware.gateway.harness import eventually, token
from tests.middleware.gateway.pgrows import expected


@contextlib.asynccontextmanager
async def kept_by(run: Callable[[], Awaitable[None]], copy: LocalCopy) -> AsyncIterator[None]:
    """`run()` (which applies messages to `copy`) in the background until the block ends;
    the block starts once `copy` is up to date (or `run` ended)."""
    task = asyncio.create_task(run())
    try:
        await eventually(lambda: copy.up_to_date or task.done(), "the copy to be up to date")
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class RefetchingCopy(LocalCopy):
    """A copy whose client, told to refetch, drops it and subscribes again from scratch."""

    refetches: int = 0


@contextlib.asynccontextmanager
async def refollowing(
    url: str, claims: dict[str, Any], query: str, params: list[Any]
) -> AsyncIterator[RefetchingCopy]:
    """A client keeping a copy of `query` until the block ends, as clients do: on
    mustRefetch it forgets its copy and its cursor and subscribes again."""
    copy = RefetchingCopy()
    async with await SyncConnection.connect(url, authorization=token(claims)) as conn:

        async def run() -> None:
            while True:
                async for message in conn.sync(query, params, copy.cursor):
                    copy.apply(message)
                    if copy.must_refetch:
                        break
                else:
                    return  # the subscription ended
                copy.refetches += 1
                copy.reset()  # no await since `apply`: nobody sees the refetch state

        async with kept_by(run, copy):
            yield copy


async def settles(copy: LocalCopy, database_url: str, sql: str, params: list[Any]) -> None:
    """`copy` is eventually up to date (loaded again, if it refetched) and equal to `sql`."""

    async def equal() -> bool:
        if not copy.up_to_date:
            return False
        return copy.rows == await expected(database_url, sql, params)

    await eventually(equal, f"the copy to equal {sql} {params}")
