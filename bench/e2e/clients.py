"""The e2e benchmark's websocket clients (`run.py`): sync subscriptions, one per bucket,
over a few connections, all in this process; what each received and how late.

One asyncio process reads every frame of every subscription. Its CPU per 1,000
commits and how late its event loop runs (the stages table's "loop lag s") are
reported with each phase, so that a client process that cannot keep up shows
as such instead of as the gateway's latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stages import Processes, Sampler, Stages
from workload import Written, micros, start_writing

from pgsift.middleware.gateway.client import LocalCopy, OperationError, SyncConnection

QUERY = "SELECT id, bucket, value, ts FROM items WHERE bucket = $1"
DRAIN_IDLE_S = 5.0  # a phase has drained when nothing new arrived for this long
DRAIN_MAX_S = 60.0


@dataclass
class Row:
    """One line of the table."""

    name: str
    asked: float
    reached: float = float("nan")
    latencies_ms: list[float] = field(default_factory=list)
    missing: int | None = None
    duplicates: int | None = None
    cpu_per_1k: float | None = None  # serve's
    up_to_date_s: float | None = None
    up_cpu_s: float | None = None  # serve's CPU seconds until all were up to date
    rss_kb_per_sub: float | None = None
    errors: int = 0
    commits: int = 0
    stages: Stages | None = None  # where the latency accumulated, and every process's CPU


class Clients:
    """Subscriptions over websockets, one per bucket; what each received live."""

    def __init__(self) -> None:
        self.copies: dict[int, LocalCopy] = {}
        self.received: Counter[tuple[int, int, int]] = Counter()
        self.deletes: Counter[tuple[int, int]] = Counter()
        self.latencies_ms: list[float] = []
        self.refetches = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.failed: set[int] = set()  # buckets whose subscription ended with an error
        self.last_arrival = time.monotonic()
        self.conns: list[SyncConnection] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, ws_url: str, subscriptions: int, connections: int) -> None:
        self.conns = [await SyncConnection.connect(ws_url) for _ in range(connections)]
        self.tasks = [
            asyncio.create_task(self.follow(self.conns[b % connections], b))
            for b in range(subscriptions)
        ]

    def up_to_date(self) -> int:
        return sum(1 for c in self.copies.values() if c.up_to_date)

    async def follow(self, conn: SyncConnection, bucket: int) -> None:
        copy = self.copies[bucket] = LocalCopy()
        try:
            async for message in conn.sync(QUERY, [bucket]):
                now = time.time()
                if message["mustRefetch"]:
                    self.refetches += 1
                if message["upToDate"]:
                    for change in message["changes"]:
                        self.last_arrival = time.monotonic()
                        if change["op"] == "DELETE":
                            self.deletes[(bucket, int(change["key"]["id"]))] += 1
                            continue
                        row = change["row"]
                        written = datetime.fromisoformat(row["ts"])
                        self.received[(bucket, int(row["id"]), micros(written))] += 1
                        self.latencies_ms.append((now - written.timestamp()) * 1000)
                copy.apply(message)
        except OperationError as exc:
            self.failed.add(bucket)
            self.errors += 1
            self.error_kinds[str(exc)[:90]] += 1

    async def phase(self, name: str, url: str, procs: Processes, stages: Sampler, tps: float,
                    seconds: float, buckets: int, folder: Path) -> Row:
        """Write at `tps` for `seconds`; the row of what the clients saw of it."""
        self.latencies_ms, self.deletes = [], Counter()
        cpu, waits, began = procs.cpu(), procs.waits(), time.monotonic()
        stages.start()
        writing = start_writing(url, tps, seconds, buckets, folder)
        while not writing.ready():
            await asyncio.sleep(0.2)
        written: Written = writing.get()
        started = time.monotonic()
        while missing(written, self) and time.monotonic() - started < DRAIN_MAX_S and (
            time.monotonic() - self.last_arrival < DRAIN_IDLE_S
        ):
            await asyncio.sleep(0.2)
        sampled = await stages.stop()
        sampled.wall_s = time.monotonic() - began
        sampled.cpu_s = {name: seconds - cpu[name] for name, seconds in procs.cpu().items()}
        sampled.cpu_s["writers"] = written.cpu_s
        sampled.wait_s = {name: seconds - waits[name] for name, seconds in procs.waits().items()}
        return Row(
            name, tps, written.commits / written.seconds, list(self.latencies_ms),
            missing(written, self),
            sum(self.received[t] - 1 for t in written.rows if self.received[t] > 1),
            sampled.cpu_s["serve"] / max(written.commits, 1) * 1000, errors=self.errors,
            commits=written.commits, stages=sampled,
        )

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for conn in self.conns:
            await conn.close()


def missing(written: Written, clients: Clients) -> int:
    """What subscriptions did not receive (those that ended with an error, counted under
    `errors`, left out)."""
    failed = clients.failed
    rows = sum(1 for t in written.rows if t[0] not in failed and t not in clients.received)
    deletes = sum(max(0, n - clients.deletes[t]) for t, n in written.deletes.items()
                  if t[0] not in failed)
    return rows + deletes


async def wait_up_to_date(clients: Clients, subscriptions: int, timeout_s: float) -> float | None:
    """Seconds until all `subscriptions` are up to date; None after `timeout_s`, or once
    some failed (they never will be)."""
    started = time.monotonic()
    while (done := clients.up_to_date()) < subscriptions:
        if time.monotonic() - started > timeout_s or done + clients.errors >= subscriptions:
            return None
        await asyncio.sleep(0.1)
    return time.monotonic() - started
