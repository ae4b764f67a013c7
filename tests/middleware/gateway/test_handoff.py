"""Where the snapshot meets the feed: no transaction lost, none sent twice, no silent gap.

Sessions are driven directly (real Postgres, capture and Redis) so each test can
act at an exact step: between recording the feed position and the snapshot, or
between two reads of the catch-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio
from psycopg_pool import AsyncConnectionPool

from pgsift.middleware.bootstrap.snapshot import snapshot_pool
from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.reader import AsyncFeedReader
from pgsift.middleware.feed.retention import AsyncFeedRetention, FeedRetention
from pgsift.middleware.gateway import catch_up as catch_up_module
from pgsift.middleware.gateway.fanout import FeedTailer
from pgsift.middleware.gateway.inbox import SendBudget
from pgsift.middleware.gateway.messages import SyncMessage
from pgsift.middleware.gateway.recent import RecentEntries
from pgsift.middleware.gateway.session import SyncSession
from pgsift.subscriptions.shape import Shape
from tests.conftest import PostgresServer
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import ISSUES_SCHEMA, eventually
from tests.middleware.gateway.pgrows import execute

QUERY = "SELECT id, title FROM issues WHERE team_id = $1"
Op = tuple[str, int]  # (op, id)


@dataclass
class Parts:
    """What a SyncSession needs, as the gateway service wires it."""

    database_url: str
    reader: AsyncFeedReader
    retention: AsyncFeedRetention
    tailer: FeedTailer
    pool: AsyncConnectionPool[Any]
    shape: Shape

    def session(self, cursor: str | None = None, **overrides: Any) -> SyncSession:
        options: dict[str, Any] = {
            "shape": self.shape, "cursor": cursor, "reader": self.reader,
            "retention": self.retention, "tailer": self.tailer, "pool": self.pool,
            "budget": SendBudget(100), "max_message_bytes": 1 << 20,
        }
        options.update(overrides)
        return SyncSession(**options)

    async def entry_of(self, xid: int) -> FeedEntry:
        """Wait for the feed entry of transaction `xid` (64-bit; the feed has 32 bits)."""
        found: list[FeedEntry] = []

        async def check() -> bool:
            entries = await self.reader.read_after(None, 10_000)
            found[:] = [e for e in entries if e.xid == xid % 2**32]
            return bool(found)

        await eventually(check, f"transaction {xid} in the feed")
        return found[0]

    async def tailed(self, entry: FeedEntry) -> None:
        await eventually(lambda: self.tailer.done_lsn >= entry.lsn, "tailer caught up")


@pytest.fixture(params=["recent", "redis"])
async def parts(
    database_url: str, redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Parts]:
    """Sessions read the tailer's recent entries ("recent"), or, with a tailer that holds
    none, Redis ("redis"): both paths must give the same messages."""
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title) VALUES (1, 1, 'one'), (2, 2, 'two'),"
        " (3, 1, 'three')",
    )
    database = keys.database_of(database_url)
    client: redis.asyncio.Redis[bytes] = redis.asyncio.Redis.from_url(redis_url)
    retention = AsyncFeedRetention.for_database(client, database)
    tail_reader = AsyncFeedReader.from_url(redis_url, database)
    tailer = FeedTailer(tail_reader, retention=retention, block_ms=100)
    if request.param == "redis":
        tailer.recent = RecentEntries(max_entries=0)
    pool = snapshot_pool(database_url, max_size=2)
    with capturing(database_url, redis_url), psycopg.connect(database_url) as conn:
        shape = Shape.parse(QUERY, params=[1], catalog=load_catalog(conn))
        await pool.open()
        await tailer.start()
        task = asyncio.create_task(tailer.run())
        try:
            yield Parts(database_url, AsyncFeedReader(client, database), retention, tailer,
                        pool, shape)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await pool.close()
            await tail_reader.close()
            await client.aclose()  # type: ignore[attr-defined]


async def commit(database_url: str, sql: str) -> int:
    """Run `sql` in its own transaction; its xid."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(sql)
        row = await (await conn.execute("SELECT pg_current_xact_id()::text::bigint")).fetchone()
        assert row is not None
        return int(row[0])


async def until_up_to_date(messages: AsyncIterator[SyncMessage]) -> list[SyncMessage]:
    received = []
    async for message in messages:
        received.append(message)
        if message.up_to_date or message.must_refetch:
            break
    return received


def ops(messages: list[SyncMessage]) -> list[Op]:
    return [(c.op, int(c.key["id"])) for m in messages for c in m.changes]


async def live_marker(parts: Parts, messages: AsyncIterator[SyncMessage], row_id: int) -> list[Op]:
    """Commit a marker row and return every change received up to it: anything sent
    twice or late would come before it (the feed is in commit order)."""
    await execute(parts.database_url,
                  f"INSERT INTO issues (id, team_id, title) VALUES ({row_id}, 1, 'marker')")
    received: list[Op] = []
    async for message in messages:
        received += ops([message])
        if ("INSERT", row_id) in received:
            return received
    raise AssertionError("the subscription ended")


class HookedSession(SyncSession):
    hook: Callable[[str], Awaitable[None]]

    async def before_snapshot(self, position: str) -> None:
        await self.hook(position)


async def test_a_commit_between_position_and_snapshot_is_not_sent_again(parts: Parts) -> None:
    hooked = _hooked(parts)

    async def between(position: str) -> None:
        xid = await commit(parts.database_url,
                           "INSERT INTO issues (id, team_id, title) VALUES (20, 1, 'between')")
        entry = await parts.entry_of(xid)
        assert entry.id > position  # after the recorded position ...
        await parts.tailed(entry)  # ... and in the catch-up the session will read

    hooked.hook = between
    messages = hooked.messages()
    first = await until_up_to_date(messages)
    assert first[-1].up_to_date
    assert sorted(ops(first)) == [("INSERT", 1), ("INSERT", 3), ("INSERT", 20)]
    assert await live_marker(parts, messages, 21) == [("INSERT", 21)]
    await messages.aclose()  # type: ignore[attr-defined]


def _hooked(parts: Parts) -> HookedSession:
    return HookedSession(
        shape=parts.shape, cursor=None, reader=parts.reader, retention=parts.retention,
        tailer=parts.tailer, pool=parts.pool, budget=SendBudget(100),
        max_message_bytes=1 << 20,
    )


@contextlib.contextmanager
def synchronous_replication(postgres_server: PostgresServer, database_url: str) -> Any:
    """Commits with synchronous_commit=on wait for a standby that never comes; every
    other connection of the test database commits locally."""
    database = keys.database_of(database_url)
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = local')
        admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'pgsift_no_such_standby'")
        admin.execute("SELECT pg_reload_conf()")
        try:
            yield
        finally:
            admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
            admin.execute("SELECT pg_reload_conf()")


async def test_a_commit_in_the_feed_but_not_yet_visible_is_delivered_once(
    parts: Parts, postgres_server: PostgresServer
) -> None:
    """The race: a transaction's commit record is in the feed (at or below the
    recorded position) while it is still invisible to the snapshot, because its
    synchronous commit waits for a standby; a later one is already visible."""
    url = parts.database_url
    with synchronous_replication(postgres_server, url):
        racer = psycopg.connect(url, autocommit=True)
        waiting: asyncio.Task[Any] | None = None
        pid = 0
        try:
            await eventually(lambda: racer.execute("SHOW synchronous_standby_names").fetchone()
                             == ("pgsift_no_such_standby",), "configuration reloaded")
            racer.execute("SET synchronous_commit = on")
            racer.execute("BEGIN")
            racer.execute("INSERT INTO issues (id, team_id, title) VALUES (30, 1, 'race')")
            xid_row = racer.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
            pid_row = racer.execute("SELECT pg_backend_pid()").fetchone()
            assert xid_row is not None and pid_row is not None
            pid = int(pid_row[0])
            waiting = asyncio.create_task(asyncio.to_thread(racer.execute, "COMMIT"))
            await parts.entry_of(int(xid_row[0]))
            assert await _visible(url, 30) is False  # in the feed, not yet visible
            after = await parts.entry_of(await commit(
                url, "INSERT INTO issues (id, team_id, title) VALUES (31, 1, 'after')"))
            await parts.tailed(after)

            messages = parts.session().messages()
            first = await until_up_to_date(messages)
            assert first[-1].up_to_date
            snapshot = [m for m in first if m.cursor is None]
            replayed = [m for m in first if m.cursor is not None]
            assert sorted(ops(snapshot)) == [("INSERT", 1), ("INSERT", 3), ("INSERT", 31)]
            assert ops(replayed) == [("INSERT", 30)]  # once; 31 not again

            await _stop_waiting(url, pid)  # the commit completes and becomes visible
            await waiting
            assert await live_marker(parts, messages, 32) == [("INSERT", 32)]
            await messages.aclose()  # type: ignore[attr-defined]
        finally:
            if waiting is not None and not waiting.done():
                await _stop_waiting(url, pid)
                with contextlib.suppress(Exception):
                    await waiting
            racer.close()


async def _stop_waiting(database_url: str, pid: int) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_cancel_backend(%s)", [pid])


async def _visible(database_url: str, row_id: int) -> bool:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM issues WHERE id = %s", [row_id])
        row = await cur.fetchone()
        return row is not None and row[0] == 1


class TrimmingReader:
    """The real reader; before its second read, the feed is trimmed past the reader."""

    def __init__(self, reader: AsyncFeedReader, redis_url: str, minid: str) -> None:
        self.reader = reader
        self.redis_url = redis_url
        self.minid = minid
        self.reads = 0

    async def read_after(
        self, cursor: str | None, count: int = 100, block_ms: int | None = None
    ) -> list[FeedEntry]:
        if self.reads == 1:
            client: redis.Redis[bytes] = redis.Redis.from_url(self.redis_url)
            FeedRetention(client, self.reader.stream).trim(self.minid)
            client.close()
        self.reads += 1
        return await self.reader.read_after(cursor, count, block_ms)

    async def first_id(self) -> str | None:
        return await self.reader.first_id()

    async def last_id(self) -> str | None:
        return await self.reader.last_id()


async def test_a_trim_during_the_catch_up_gets_must_refetch(
    parts: Parts, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catch_up_module, "CATCH_UP_BATCH", 1)
    entries = []
    for row_id in (40, 41, 42, 43):
        xid = await commit(parts.database_url,
                           f"INSERT INTO issues (id, team_id, title) VALUES ({row_id}, 1, 'x')")
        entries.append(await parts.entry_of(xid))
    await parts.tailed(entries[-1])
    earlier = [e.id for e in await parts.reader.read_after(None, 10_000) if e.lsn < entries[0].lsn]
    cursor = earlier[-1] if earlier else "0-0"  # the catch-up's first read is 40
    reader = TrimmingReader(parts.reader, redis_url, entries[-1].id)  # 41 and 42 go
    messages = await until_up_to_date(parts.session(cursor, reader=reader).messages())
    if parts.tailer.recent.max_entries:
        # The tailer holds them: the trim in Redis takes nothing from this catch-up.
        assert ops(messages) == [("INSERT", n) for n in (40, 41, 42, 43)]
        assert not any(m.must_refetch for m in messages)
    else:
        assert ops(messages) == [("INSERT", 40)]
        assert messages[-1].must_refetch
