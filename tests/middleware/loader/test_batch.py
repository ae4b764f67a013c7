"""The windowed DataLoader, without a server."""

from __future__ import annotations

import asyncio

import pytest

from pgsift.middleware.loader.batch import WindowedDataLoader


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.loading = asyncio.Event()  # a batch was dispatched and waits in `load`

    async def load(self, keys: list[int]) -> list[str]:
        self.batches.append(list(keys))
        self.loading.set()
        await self.release.wait()
        return [f"v{key}" for key in keys]


async def test_keys_within_the_window_form_one_batch() -> None:
    recorder = Recorder()
    recorder.release.set()
    loader: WindowedDataLoader[int, str] = WindowedDataLoader(
        recorder.load, window_s=0.2, max_batch_size=100
    )
    first = loader.load(1)
    await asyncio.sleep(0)
    second = loader.load(2)
    assert list(await asyncio.gather(first, second)) == ["v1", "v2"]
    assert recorder.batches == [[1, 2]]


async def test_a_full_batch_goes_at_once() -> None:
    recorder = Recorder()
    recorder.release.set()
    loader: WindowedDataLoader[int, str] = WindowedDataLoader(
        recorder.load, window_s=3600, max_batch_size=2
    )
    assert list(await asyncio.gather(loader.load(1), loader.load(2))) == ["v1", "v2"]
    assert recorder.batches == [[1, 2]]


async def test_in_flight_keys_are_shared_until_done_then_forgotten() -> None:
    recorder = Recorder()
    loader: WindowedDataLoader[int, str] = WindowedDataLoader(
        recorder.load, window_s=0, max_batch_size=100
    )
    first = loader.load(1)
    await recorder.loading.wait()
    assert loader.load(1) is first
    assert list(loader.inflight) == [1]
    recorder.release.set()
    assert await first == "v1"
    await asyncio.sleep(0)
    assert not loader.inflight
    assert await loader.load(1) == "v1"
    assert recorder.batches == [[1], [1]]


async def test_cleared_key_gets_a_fresh_load() -> None:
    recorder = Recorder()
    loader: WindowedDataLoader[int, str] = WindowedDataLoader(
        recorder.load, window_s=0, max_batch_size=100
    )
    first = loader.load(1)
    await recorder.loading.wait()
    loader.clear(1)
    second = loader.load(1)
    assert second is not first
    recorder.release.set()
    assert list(await asyncio.gather(first, second)) == ["v1", "v1"]
    assert recorder.batches == [[1], [1]]


async def test_fail_queued_rejects_without_loading() -> None:
    recorder = Recorder()
    loader: WindowedDataLoader[int, str] = WindowedDataLoader(
        recorder.load, window_s=3600, max_batch_size=100
    )
    pending = loader.load(1)
    loader.fail_queued(RuntimeError("closed"))
    with pytest.raises(RuntimeError, match="closed"):
        await pending
    assert recorder.batches == []
