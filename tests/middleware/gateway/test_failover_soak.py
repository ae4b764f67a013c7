"""Soak: clients resume from their cursors again and again while the feed's producers fail.

A writer commits small transactions to rows of team 1 (so that every feed entry
is a transaction of the clients' query); a leader and a standby `pgsift capture`
run with a one-second lock. Faults are drawn from a seeded random generator:

* failover: the leading capture is killed (SIGKILL); the standby takes over and a
  new standby starts;
* walsender: Postgres ends the slot's walsender (`pg_terminate_backend`);
* redis: Redis drops every client connection (`CLIENT KILL TYPE normal`): the
  gateway's tailer and sessions, capture's, the test's own.

Meanwhile several clients each subscribe from their last cursor, read the
catch-up and a little of the live stream, and go away, over and over. Every such
episode is checked against `XRANGE` of the feed: from the resume cursor to the
last cursor the client was given, every transaction exactly once, in order,
none skipped. A final client must then receive a transaction committed after
the faults (the tailer is alive).

`make test` runs `FAULTS` faults (well under a minute); `PGSIFT_SOAK_FAULTS=200`
soaks longer, `PGSIFT_SOAK_SEED` picks another sequence of faults and pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import redis
import websockets

from pgsift.middleware.errors import GatewayError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.gateway.client import SyncConnection
from tests.middleware.capture.processes import CaptureProcess, wait_for
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    WAIT_S,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute

log = logging.getLogger(__name__)

FAULTS = int(os.environ.get("PGSIFT_SOAK_FAULTS", "6"))
SEED = os.environ.get("PGSIFT_SOAK_SEED", "15")
KINDS = ("failover", "walsender", "redis")
CLIENTS = 3
ROWS = 50  # team-1 rows the writer inserts first, then updates
WRITE_EVERY_S = 0.02
QUERY = "SELECT id, title FROM issues WHERE team_id = $1"
TEAM_1 = token({"sub": "soak", "team_ids": [1]}, expires_in=24 * 3600.0)
CAPTURE_ENV = {"PGSIFT_CAPTURE_LOCK_TTL_S": "1"}


@dataclass
class Episode:
    """One resumed subscription: its cursor and the cursors it was given, in order."""

    client: int
    resume: str
    started: float
    transactions: list[str] = field(default_factory=list)  # cursors of messages with changes
    last: str | None = None  # the newest cursor given (upToDate included)
    refetched: bool = False


class Captures:
    """A leading and a standby `pgsift capture`; a killed leader gets a new standby."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.database = keys.database_of(database_url)
        self.processes: list[CaptureProcess] = []

    def start(self) -> None:
        first = self._start("--setup")
        wait_for(lambda: "capturing" in first.log, "the first capture to stream")
        self._start()

    def kill_leader(self) -> str:
        client = redis.Redis.from_url(self.redis_url)
        try:
            holder = client.get(keys.capture_lock(self.database))
        finally:
            client.close()
        # The lock's value is "<token>:<host>:<pid>:<id>".
        pid = int(holder.decode().split(":")[2]) if holder else -1
        leader = next((p for p in self.processes if p.process is not None
                       and p.process.pid == pid and p.running()), None)
        if leader is None:
            return f"failover: no leader to kill (lock {holder!r})"
        leader.kill()
        self._start()
        return f"failover: killed capture pid {pid}"

    def _start(self, *flags: str) -> CaptureProcess:
        process = CaptureProcess(
            self.database_url, self.redis_url, "--all", *flags, env=CAPTURE_ENV
        ).start()
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.log for p in self.processes)

    def cleanup(self) -> None:
        for process in self.processes:
            process.cleanup()


def terminate_walsender(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE database = current_database() AND active_pid IS NOT NULL"
        ).fetchall()
    return f"walsender: terminated {[row[0] for row in rows]}"


def kill_redis_clients(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    try:
        killed = client.execute_command("CLIENT", "KILL", "TYPE", "normal")
    finally:
        client.close()
    return f"redis: killed {killed} client connection(s)"


def feed_ids(redis_url: str, database: str, after: str, upto: str) -> list[str]:
    """Stream IDs in (after, upto], read again if Redis just dropped the connection."""
    for attempt in range(5):
        client = redis.Redis.from_url(redis_url)
        try:
            items = client.xrange(keys.feed_stream(database), min=f"({after}", max=upto)
            return [raw.decode() for raw, _ in items]
        except redis.ConnectionError:
            time.sleep(0.1 * (attempt + 1))
        finally:
            client.close()
    raise AssertionError("Redis unreachable for XRANGE")


def transactions_of(ids: list[str]) -> list[int]:
    """The commit LSNs of the transactions among stream IDs (chunks share one)."""
    lsns: list[int] = []
    for stream_id in ids:
        lsn = FeedPosition(stream_id).lsn
        if not lsns or lsns[-1] != lsn:
            lsns.append(lsn)
    return lsns


async def write(database_url: str, stop: asyncio.Event) -> None:
    """Small transactions on team 1: inserts first, then updates, until stopped."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        n = 0
        while not stop.is_set():
            n += 1
            if n <= ROWS:
                await conn.execute(
                    "INSERT INTO issues (id, team_id, title) VALUES (%s, 1, 'new')", [n]
                )
            else:
                await conn.execute(
                    "UPDATE issues SET title = %s WHERE id = %s", [f"t{n}", n % ROWS + 1]
                )
            await asyncio.sleep(WRITE_EVERY_S)


class Resumer:
    """One client: resume from the last cursor, read catch-up and some live, leave; repeat."""

    def __init__(self, number: int, url: str, rng: random.Random) -> None:
        self.number = number
        self.url = url
        self.rng = rng
        self.cursor = "0-0"  # the feed's start: nothing is trimmed in this test
        self.episodes: list[Episode] = []
        self.errors: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            episode = Episode(self.number, self.cursor, time.monotonic())
            try:
                await self._episode(episode)
            except (GatewayError, OSError, websockets.ConnectionClosed) as exc:
                # Refused or cut while Redis dropped the gateway's connections: try again.
                self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.1)
                continue
            self.episodes.append(episode)
            if episode.refetched:
                self.cursor = "0-0"  # replay the whole (untrimmed) feed instead of a snapshot
            elif episode.last is not None:
                self.cursor = episode.last

    async def _episode(self, episode: Episode) -> None:
        async with await SyncConnection.connect(self.url, authorization=TEAM_1) as conn:
            messages = conn.sync(QUERY, [1], episode.resume)
            try:
                await self._read(messages, episode)
            finally:
                await messages.aclose()  # type: ignore[attr-defined]

    async def _read(self, messages: AsyncIterator[dict[str, Any]], episode: Episode) -> None:
        loop = asyncio.get_running_loop()
        leave_at: float | None = None
        while True:
            timeout = WAIT_S if leave_at is None else max(0.0, leave_at - loop.time())
            try:
                message = await asyncio.wait_for(anext(messages), timeout)
            except TimeoutError:
                if leave_at is None:
                    raise AssertionError(
                        f"client {self.number}: no upToDate within {WAIT_S} s of resuming "
                        f"from {episode.resume}"
                    ) from None
                return
            except StopAsyncIteration:
                return
            if message["mustRefetch"]:
                episode.refetched = True
                return
            if message["cursor"] is not None:
                episode.last = message["cursor"]
                if message["changes"]:
                    episode.transactions.append(message["cursor"])
            if message["upToDate"] and leave_at is None:
                leave_at = loop.time() + self.rng.uniform(0.05, 0.6)


def problems_of(episode: Episode, redis_url: str, database: str) -> str | None:
    """What is wrong with one episode, compared with the feed; None when nothing is."""
    if episode.last is None:
        return None
    if episode.transactions and FeedPosition(episode.transactions[-1]) > episode.last:
        return f"a transaction after the last cursor {episode.last}"
    want = transactions_of(feed_ids(redis_url, database, episode.resume, episode.last))
    got = [FeedPosition(cursor).lsn for cursor in episode.transactions]
    if got == want:
        return None
    missing = [lsn for lsn in want if lsn not in got]
    twice = sorted({lsn for lsn in got if got.count(lsn) > 1})
    extra = [lsn for lsn in got if lsn not in want]
    return (
        f"resumed from {episode.resume} up to {episode.last}: {len(want)} transactions in the "
        f"feed, {len(got)} received; missing {missing[:10]}{'...' if len(missing) > 10 else ''}"
        f" ({len(missing)}), twice {twice[:10]}, not in the feed {extra[:10]}, first received "
        f"{got[:3]} vs feed {want[:3]}"
    )


async def test_resumed_clients_miss_nothing_across_failovers_and_disconnects(
    database_url: str, redis_url: str
) -> None:
    database = keys.database_of(database_url)
    rng = random.Random(SEED)
    await execute(database_url, ISSUES_SCHEMA)
    captures = Captures(database_url, redis_url)
    timeline: list[str] = []
    began = time.monotonic()
    try:
        captures.start()
        async with serve(gateway_settings(database_url, redis_url)) as url:
            stop_writing, stop_resuming = asyncio.Event(), asyncio.Event()
            writer = asyncio.create_task(write(database_url, stop_writing))
            resumers = [Resumer(n, url, random.Random(f"{SEED}-{n}")) for n in range(CLIENTS)]
            tasks = [asyncio.create_task(r.run(stop_resuming)) for r in resumers]
            try:
                # Every kind as often as the others, in a seeded order.
                kinds = [KINDS[n % len(KINDS)] for n in range(FAULTS)]
                rng.shuffle(kinds)
                for kind in kinds:
                    await asyncio.sleep(rng.uniform(0.3, 1.2))
                    before = _feed_length(redis_url, database)
                    if kind == "failover":
                        what = await asyncio.to_thread(captures.kill_leader)
                    elif kind == "walsender":
                        what = await asyncio.to_thread(terminate_walsender, database_url)
                    else:
                        what = await asyncio.to_thread(kill_redis_clients, redis_url)
                    timeline.append(f"{time.monotonic() - began:7.2f} s  {what}")
                    log.info("soak fault: %s", what)
                    # Settled once capture appends again: the next fault hits a working feed.
                    await _until(lambda: _feed_length(redis_url, database) > before + 3,  # noqa: B023
                                 f"the feed to grow after: {what}")
                await asyncio.sleep(1.0)
                stop_resuming.set()
                stop_writing.set()
                await asyncio.gather(writer, *tasks)
                final = Resumer(CLIENTS, url, random.Random(SEED))
                final.cursor = max((r.cursor for r in resumers), key=FeedPosition)
                stuck = await _delivers_after(final, database_url, redis_url)
            finally:
                stop_writing.set()
                stop_resuming.set()
                for task in [writer, *tasks]:
                    with contextlib.suppress(BaseException):
                        await task
        episodes = [e for r in resumers for e in r.episodes]
        failures = [] if stuck is None else [stuck]
        for episode in episodes:
            problem = problems_of(episode, redis_url, database)
            if problem is not None:
                failures.append(
                    f"client {episode.client} at {episode.started - began:7.2f} s: {problem}"
                )
        checked = [e for e in episodes if e.last is not None]
        assert len(checked) >= CLIENTS * 2, f"too few episodes checked: {len(checked)}"
        assert not failures, (
            f"seed {SEED}, {FAULTS} faults:\n" + "\n".join(timeline) + "\nfailures:\n"
            + "\n".join(failures)
        )
        log.info("soak: %d episodes checked, %d refetched, %d client errors, faults:\n%s",
                 len(checked), sum(e.refetched for e in episodes),
                 sum(len(r.errors) for r in resumers), "\n".join(timeline))
    finally:
        captures.cleanup()


async def _delivers_after(client: Resumer, database_url: str, redis_url: str) -> str | None:
    """Whether a client resumed after the faults is given a transaction committed after
    them (a tailer that died leaves it up to date at a frozen position): None, or why not."""
    database = keys.database_of(database_url)
    before = _feed_length(redis_url, database)
    await execute(database_url,
                  "INSERT INTO issues (id, team_id, title) VALUES (1000000, 1, 'marker')")
    await _until(lambda: _feed_length(redis_url, database) > before, "the marker in the feed")
    marker = feed_ids(redis_url, database, "0-0", "+")[-1]
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        await _until(lambda: FeedPosition(client.cursor) >= marker,
                     f"a resumed client given the marker transaction {marker}")
        return None
    except AssertionError as exc:
        base = client.url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(timeout=10) as http:
            health = (await http.get(f"{base}/healthz")).text
        last = client.episodes[-1] if client.episodes else None
        return (
            f"{exc}; the client's cursor stays at {client.cursor} (last episode: resumed from "
            f"{last and last.resume}, given {last and last.last}); errors "
            f"{client.errors[-3:]}; /healthz: {health}"
        )
    finally:
        stop.set()
        await task


def _feed_length(redis_url: str, database: str) -> int:
    for attempt in range(5):
        client = redis.Redis.from_url(redis_url)
        try:
            return int(client.xlen(keys.feed_stream(database)))
        except redis.ConnectionError:
            time.sleep(0.1 * (attempt + 1))
        finally:
            client.close()
    raise AssertionError("Redis unreachable for XLEN")


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)
