"""The feed tailer under bad input: trims that overtake it, entries it cannot route or
read, Redis errors; and the subscriptions that register meanwhile.

Entries are appended straight to a real Redis stream (through the codec), so each
test decides exactly what the tailer reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.asyncio

from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import encode_entry
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.reader import AsyncFeedReader
from pgsift.middleware.feed.retention import AsyncFeedRetention, FeedRetention
from pgsift.middleware.gateway import session as session_module
from pgsift.middleware.gateway.fanout import FeedTailer
from pgsift.middleware.gateway.inbox import Inbox, SendBudget
from pgsift.middleware.gateway.messages import SyncMessage
from pgsift.middleware.gateway.reassembly import RoutedTx
from pgsift.middleware.gateway.recent import RecentEntries
from pgsift.middleware.gateway.session import SyncSession
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.shape import Shape

DATABASE = "tailerdb"
STREAM = keys.feed_stream(DATABASE)
CATALOG = Catalog.from_dict(
    {
        "public.issues": {"columns": {"id": "int8", "team_id": "int4"}, "primary_key": ["id"]},
        "public.labels": {"columns": {"id": "int8", "team_id": "int4"}, "primary_key": ["id"]},
    }
)
WAIT_S = 30.0


def shape(table: str) -> Shape:
    return Shape.parse(f"SELECT id, team_id FROM {table} WHERE team_id = $1", params=[1],
                       catalog=CATALOG)


def insert(table: str, lsn: int, row_id: int) -> FeedEntry:
    row = {"id": row_id, "team_id": 1}
    change = Change(f"public.{table}", "insert", {"id": row_id}, row, None)
    return FeedEntry(lsn=lsn, xid=lsn, commit_time=datetime.now(UTC), changes=(change,))


class GatedSource:
    """The real reader, each read held until the test opens the gate (and, once read,
    held again until it opens the second gate)."""

    def __init__(self, reader: AsyncFeedReader) -> None:
        self.reader = reader
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = 0  # reads begun (parked at the gate while it is closed)
        self.read_gate = asyncio.Event()
        self.read_gate.set()
        self.empty_reads = 0  # reads that found nothing (parked at read_gate while closed)

    async def read_after(
        self, cursor: str | None, count: int = 100, block_ms: int | None = None
    ) -> list[FeedEntry]:
        self.arrived += 1
        await self.gate.wait()
        entries = await self.reader.read_after(cursor, count, 50)
        if not entries:
            self.empty_reads += 1
        await self.read_gate.wait()
        return entries

    async def first_id(self) -> str | None:
        return await self.reader.first_id()

    async def last_id(self) -> str | None:
        return await self.reader.last_id()


@pytest.fixture
async def feed(redis_url: str) -> AsyncIterator[tuple[redis.Redis[bytes], GatedSource, FeedTailer]]:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    aclient: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    append(client, insert("issues", 10, 1))  # the feed's end when the tailer starts
    source = GatedSource(AsyncFeedReader(aclient, DATABASE))
    tailer = FeedTailer(source, retention=AsyncFeedRetention(aclient, STREAM), block_ms=50)
    await tailer.start()
    task = asyncio.create_task(tailer.run())
    try:
        yield client, source, tailer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Fatal):
            await task
        await aclient.aclose()  # type: ignore[attr-defined]
        client.close()


def append(client: redis.Redis[bytes], entry: FeedEntry) -> None:
    fields: Any = encode_entry(entry)
    client.xadd(STREAM, fields, id=entry.id)


async def next_tx(inbox: Inbox) -> RoutedTx | None:
    return await asyncio.wait_for(inbox.get(), WAIT_S)


async def consumed(tailer: FeedTailer, lsn: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while tailer.done_lsn < lsn:
            await asyncio.sleep(0.01)


async def held(source: GatedSource) -> None:
    """Close the gate and wait until the tailer is parked at it."""
    source.gate.clear()
    arrived = source.arrived
    async with asyncio.timeout(WAIT_S):
        while source.arrived == arrived:
            await asyncio.sleep(0.01)


class RecordingLoader:
    """Stands in for the batch loader: what the tailer told it."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.observed: list[str] = []
        self.forgot_all = 0

    def observe(self, entry: FeedEntry) -> None:
        if self.fail:
            raise RuntimeError("observe failed")
        self.observed.append(entry.id)

    def forget_all(self) -> None:
        self.forgot_all += 1


async def test_a_trim_that_overtakes_the_tailer_overflows_every_inbox(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    client, source, tailer = feed
    await held(source)
    tailer.loader = loader = RecordingLoader()
    inbox = tailer.subscribe(shape("issues"), SendBudget(10))
    append(client, insert("issues", 20, 2))
    append(client, insert("issues", 30, 3))
    FeedRetention(client, STREAM).trim("30-0")  # 20 goes before the tailer read it
    source.gate.set()
    assert await next_tx(inbox) is None  # mustRefetch, not 30 with 20 silently lost
    await consumed(tailer, 30)
    # The loader never saw 20: it must not serve rows cached before it.
    assert loader.forgot_all == 1 and loader.observed == ["30-0"]
    later = tailer.subscribe(shape("issues"), SendBudget(10))
    append(client, insert("issues", 40, 4))
    received = await next_tx(later)
    assert received is not None and received.lsn == 40  # the tailer goes on


async def test_an_entry_that_fails_to_route_overflows_its_tables_inboxes_only(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    client, _, tailer = feed
    issues = tailer.subscribe(shape("issues"), SendBudget(10))
    labels = tailer.subscribe(shape("labels"), SendBudget(10))
    # An insert whose new row lacks its key column: routing it raises.
    broken = Change("public.issues", "insert", {"id": 5}, {"team_id": 1}, None)
    append(client, FeedEntry(20, 20, datetime.now(UTC), (broken,)))
    append(client, insert("labels", 30, 6))
    append(client, insert("issues", 40, 7))
    assert await next_tx(issues) is None
    received = await next_tx(labels)
    assert received is not None and received.lsn == 30
    assert tailer.ready


async def test_an_entry_that_cannot_be_read_is_stepped_over(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    client, source, tailer = feed
    await held(source)
    tailer.loader = loader = RecordingLoader()
    before = tailer.subscribe(shape("labels"), SendBudget(10))
    append(client, insert("labels", 20, 2))
    client.xadd(STREAM, {"m": b"\xc1 not msgpack"}, id="30-0")
    append(client, insert("labels", 40, 4))
    source.gate.set()
    first = await next_tx(before)
    assert first is not None and first.lsn == 20
    assert await next_tx(before) is None  # which tables 30 touched is unknown: all refetch
    await consumed(tailer, 40)
    assert loader.forgot_all == 1 and loader.observed == ["20-0", "40-0"]
    later = tailer.subscribe(shape("labels"), SendBudget(10))
    append(client, insert("labels", 50, 5))
    received = await next_tx(later)
    assert received is not None and received.lsn == 50


async def test_a_loader_that_fails_to_observe_forgets_everything(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    client, _, tailer = feed
    tailer.loader = loader = RecordingLoader(fail=True)
    inbox = tailer.subscribe(shape("issues"), SendBudget(10))
    append(client, insert("issues", 20, 2))
    received = await next_tx(inbox)
    assert received is not None and received.lsn == 20  # clients still get the change
    assert loader.forgot_all == 1


class Fatal(BaseException):
    """Something no `except Exception` stops."""


async def test_when_the_tailer_task_dies_every_inbox_overflows(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    _, source, tailer = feed
    await held(source)
    inbox = tailer.subscribe(shape("issues"), SendBudget(10))

    async def die(cursor: str | None, count: int = 100, block_ms: int | None = None) -> Any:
        raise Fatal

    source.reader.read_after = die  # type: ignore[method-assign]
    source.gate.set()
    assert await next_tx(inbox) is None
    assert not tailer.ready


async def until(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


def session(
    tailer: FeedTailer, aclient: redis.asyncio.Redis[bytes], cursor: str, table: str = "issues"
) -> AsyncIterator[SyncMessage]:
    """The messages of a subscription resuming from `cursor` (no snapshot: no Postgres)."""
    return SyncSession(
        shape=shape(table),
        cursor=cursor,
        reader=AsyncFeedReader(aclient, DATABASE),
        retention=AsyncFeedRetention(aclient, STREAM),
        tailer=tailer,
        pool=Any,  # type: ignore[arg-type]  # only a subscription without cursor reads it
        budget=SendBudget(10),
        max_message_bytes=1 << 20,
    ).messages()


async def until_up_to_date(messages: AsyncIterator[SyncMessage]) -> list[SyncMessage]:
    received = []
    async with asyncio.timeout(WAIT_S):
        async for message in messages:
            received.append(message)
            if message.up_to_date or message.must_refetch:
                return received
    raise AssertionError("the subscription ended before upToDate")


def keys_of(messages: list[SyncMessage]) -> list[Any]:
    """The ids of the changes, in their wire form (an int8 is a string of digits)."""
    return [change.key["id"] for message in messages for change in message.changes]


async def test_a_subscription_after_the_tailer_jumped_a_trim_catches_up_through_the_gap(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    """A trim that overtakes an empty read moves the tailer's cursor to the feed's end;
    entries there it never delivered belong to the catch-up of whoever comes next."""
    client, source, tailer = feed
    aclient = source.reader.client
    await until(lambda: tailer.ready, "tailing")
    empty = source.empty_reads
    source.read_gate.clear()
    await until(lambda: source.empty_reads > empty, "an empty read parked")
    for lsn in (20, 30, 40):
        append(client, insert("issues", lsn, lsn))
    FeedRetention(client, STREAM).trim("30-0")  # 20 goes: the tailer's cursor (10) is lost
    arrived = source.arrived
    source.read_gate.set()
    await until(lambda: source.arrived > arrived, "the tailer moved on")
    # A client whose copy holds 20 (say, from another gateway) resumes here.
    received = await until_up_to_date(session(tailer, aclient, "20-0"))
    assert keys_of(received) == ["30", "40"]
    assert received[-1].up_to_date and received[-1].cursor == "40-0"


async def test_a_client_resuming_before_an_unreadable_entry_must_refetch(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer],
) -> None:
    client, _, tailer = feed
    tailer.loader = loader = RecordingLoader()
    append(client, insert("issues", 20, 2))
    client.xadd(STREAM, {"m": b"\xc1 not msgpack"}, id="30-0")
    await until(lambda: loader.forgot_all == 1, "the tailer stepped over 30")
    received = await until_up_to_date(session(tailer, source_client(tailer), "20-0"))
    assert [m.must_refetch for m in received] == [True]


def source_client(tailer: FeedTailer) -> redis.asyncio.Redis[bytes]:
    source: Any = tailer._source  # the GatedSource of the fixture
    client: redis.asyncio.Redis[bytes] = source.reader.client
    return client


async def test_a_resumed_subscription_logs_both_sides_of_its_handoff(
    feed: tuple[redis.Redis[bytes], GatedSource, FeedTailer], caplog: pytest.LogCaptureFixture
) -> None:
    client, source, tailer = feed
    caplog.set_level(logging.INFO, logger="pgsift.middleware.gateway.session")
    for lsn in (20, 30):
        append(client, insert("labels", lsn, lsn))
    await consumed(tailer, 30)
    received = await until_up_to_date(session(tailer, source.reader.client, "10-0"))
    assert received[-1].up_to_date
    logged = [r.getMessage() for r in caplog.records if "resumed from" in r.getMessage()]
    assert logged == [
        f"subscription to {shape('issues').key} resumed from 10-0: catch-up end 30-0, "
        "last read 30-0"
    ]


@pytest.fixture
def tailer_url(redis_url: str) -> Iterator[tuple[str, redis.Redis[bytes]]]:
    """A Redis user for the tailer whose commands the test can revoke (a real Redis error),
    and an admin client to do it."""
    admin: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    admin.acl_setuser("tailer", enabled=True, nopass=True, keys=["*"], commands=["+@all"])
    try:
        yield redis_url.replace("redis://", "redis://tailer:any@"), admin
    finally:
        admin.acl_deluser("tailer")
        admin.close()


@contextlib.asynccontextmanager
async def tailing(
    tailer_client: redis.asyncio.Redis[bytes], block_ms: int
) -> AsyncIterator[tuple[FeedTailer, asyncio.Task[None]]]:
    """A running tailer whose every Redis command goes through `tailer_client`."""
    tailer = FeedTailer(AsyncFeedReader(tailer_client, DATABASE),
                        AsyncFeedRetention(tailer_client, STREAM), block_ms=block_ms)
    await tailer.start()
    task = asyncio.create_task(tailer.run())
    try:
        await until(lambda: tailer.ready, "tailing")
        yield tailer, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, redis.RedisError):
            await task
        await tailer_client.aclose()  # type: ignore[attr-defined]


async def test_redis_errors_do_not_end_the_tailer_and_no_one_is_up_to_date_meanwhile(
    redis_url: str,
    tailer_url: tuple[str, redis.Redis[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, admin = tailer_url
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    aclient: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    tailer_client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(url)
    append(client, insert("issues", 10, 1))
    try:
        async with tailing(tailer_client, block_ms=50) as (tailer, task):
            early = tailer.subscribe(shape("issues"), SendBudget(10))
            # The retention check after each read (a GET) now fails; the read itself works.
            admin.acl_setuser("tailer", commands=["-get"])
            append(client, insert("issues", 20, 2))
            await until(lambda: not tailer.ready, "the tailer noticed")
            monkeypatch.setattr(session_module, "TAILER_WAIT_S", 0.5, raising=False)
            with pytest.raises(GatewayError, match="cannot read the change feed"):
                await until_up_to_date(session(tailer, aclient, "10-0"))
            monkeypatch.undo()
            async with contextlib.aclosing(session(tailer, aclient, "10-0")) as resumed:
                waiting = asyncio.create_task(until_up_to_date(resumed))
                admin.acl_setuser("tailer", commands=["+get"])
                received = await next_tx(early)  # retried from its cursor: nothing lost
                assert received is not None and received.lsn == 20
                assert [m.up_to_date for m in await waiting] == [True]
                live = await asyncio.wait_for(anext(resumed), WAIT_S)
                assert keys_of([live]) == ["2"]
            assert not task.done()
    finally:
        await aclient.aclose()  # type: ignore[attr-defined]
        client.close()


async def test_the_tailer_outlives_killed_connections(redis_url: str) -> None:
    """`CLIENT KILL TYPE normal` over and over while the feed grows: afterwards the
    tailer still delivers, from where it was, everything in order."""
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    # No retries inside redis-py: every kill that lands mid-command reaches the tailer.
    no_retry: Any = {"retry": None, "retry_on_error": []}
    tailer_client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url, **no_retry)
    append(client, insert("issues", 10, 1))
    async with tailing(tailer_client, block_ms=5) as (tailer, task):
        inbox = tailer.subscribe(shape("issues"), SendBudget(10_000))
        for lsn in range(20, 2020, 10):
            append(client, insert("issues", lsn, lsn))
            client.execute_command("CLIENT KILL TYPE normal SKIPME yes")
            await asyncio.sleep(0.002)
        append(client, insert("issues", 5000, 5000))
        received: list[int] = []
        while not received or received[-1] != 5000:
            tx = await next_tx(inbox)
            assert tx is not None, "overflowed"
            received.append(tx.lsn)
        assert received == [*range(20, 2020, 10), 5000]
        assert not task.done()
    client.close()


async def test_a_tailer_starts_holding_the_newest_entries(redis_url: str) -> None:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    aclient: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    try:
        for lsn in range(20, 30):
            append(client, insert("issues", lsn, lsn))
        retention = AsyncFeedRetention(aclient, STREAM)
        small = FeedTailer(AsyncFeedReader(aclient, DATABASE), retention=retention)
        small.recent = RecentEntries(max_entries=4)
        await small.start()
        # The newest 4 read: the oldest of them marks where the held run starts.
        assert small.recent.after(FeedPosition("25-0"), 10) is None
        held_ids = small.recent.after(FeedPosition("26-0"), 10)
        assert held_ids is not None and [e.id for e in held_ids] == ["27-0", "28-0", "29-0"]
        whole = FeedTailer(AsyncFeedReader(aclient, DATABASE), retention=retention)
        await whole.start()  # the whole feed fits: held from the start of the feed
        everything = whole.recent.after(None, 100)
        assert everything is not None and [e.lsn for e in everything] == list(range(20, 30))
        walked = whole.recent.before(FeedPosition("29-0"), inclusive=True, count=100)
        assert walked is not None and len(walked) == 10
    finally:
        await aclient.aclose()  # type: ignore[attr-defined]
        client.close()
