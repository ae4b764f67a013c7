"""Coalesced reads: callers share one call, always one issued after they asked."""

from __future__ import annotations

import asyncio

import pytest

from pgsift.middleware.feed.coalesce import Coalesced


class Source:
    """Counts calls; each call answers the number of calls started before it ended."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def fetch(self) -> int:
        self.started += 1
        number = self.started
        await self.release.wait()
        return number


async def test_callers_that_ask_together_share_one_call() -> None:
    source = Source()
    read = Coalesced(source.fetch)
    first = [asyncio.create_task(read()) for _ in range(100)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*first) == [1] * 100
    assert source.started == 1


async def test_a_caller_arriving_during_a_call_gets_the_next_one() -> None:
    source = Source()
    read = Coalesced(source.fetch)
    early = asyncio.create_task(read())
    while source.started == 0:  # under way
        await asyncio.sleep(0)
    late = [asyncio.create_task(read()) for _ in range(10)]
    await asyncio.sleep(0)
    source.release.set()
    assert await early == 1
    assert await asyncio.gather(*late) == [2] * 10  # read after they asked
    assert source.started == 2


async def test_errors_reach_every_caller_of_that_call_and_the_next_call_is_fresh() -> None:
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return calls

    read = Coalesced(failing)
    results = await asyncio.gather(read(), read(), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await read() == 2


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    source = Source()
    read = Coalesced(source.fetch)
    gone, stays = asyncio.create_task(read()), asyncio.create_task(read())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    source.release.set()
    assert await stays == 1
