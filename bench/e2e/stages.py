"""Where commit-to-client latency accumulates, for `run.py`: each stage's lag sampled
during a phase, and the CPU seconds of every process involved.

A change goes Postgres (commit, WAL) -> walsender (logical decoding) -> `capture`
(pgoutput -> XADD) -> Redis -> `serve` (the feed tailer, routing, websocket
frames) -> the clients. Sampled every `INTERVAL_S` while writing and draining:

* wal->sent kB: WAL written but not yet sent by the walsender (decoding behind);
* wal->feed kB: WAL written but not yet in the feed (the newest stream ID is the
  newest stored transaction's commit LSN): walsender and capture together;
* slot kB: WAL past the slot's confirmed_flush_lsn (what capture confirmed);
* flush lag s: `pg_stat_replication.flush_lag`, Postgres's time proxy for the
  same (WAL flushed -> capture confirmed it);
* tailer lag s: serve's `pgsift_gateway_feed_lag_seconds`, now minus the commit
  time of the newest entry the feed tailer read (commit -> serve has it);
* behind: serve's `pgsift_feed_entries_behind` (feed entries after the tailer,
  counted up to 100).
* clients loop lag s: how late this sampler (a task of the clients' event loop)
  woke up: a busy or CPU-starved client process delays every frame it reads.
The client latency minus the tailer lag is what serve's delivery and the clients
themselves add.

CPU: user+system seconds of each process during the phase (writing and drain):
`serve`, `capture`, the bench's client process(es), the writer processes (they
report their own), Postgres split into the walsender and every other process of
the cluster (the postmaster's own, its live children's and its reaped children's
time), and Redis; how long each waited, runnable, for a CPU (the kernel's
schedstat, summed over the process's threads; Postgres: the walsender only); and
the whole machine's busy time (/proc/stat), of which "others" is what processes
outside this benchmark (other work on the machine) used.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis.asyncio

INTERVAL_S = 0.5  # each sample scrapes serve's /metrics: ~1% of its CPU at 4 a second
CORES = os.cpu_count() or 1
PROCESSES = ("serve", "capture", "clients", "writers", "walsender", "postgres", "redis")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User+system seconds of `pid` (plus those of its reaped children), 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int, leave_out: int | None = None) -> float:
    """A process's, its live children's and its reaped children's CPU seconds, without
    the child `leave_out` (a child reaped meanwhile stays counted: in its parent's)."""
    total = cpu_seconds(pid, children=True)
    for line in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if int(line) != leave_out:
            total += cpu_seconds(int(line), children=True)
    return total


def runq_seconds(pid: int) -> float:
    """Seconds the threads of `pid` spent runnable but waiting for a CPU."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def machine_busy_seconds() -> float:
    """Core-seconds every CPU of the machine spent busy since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Processes:
    """The pids whose CPU a phase counts (writers report theirs themselves)."""

    serve: int
    capture: int
    postmaster: int
    walsender: int
    redis: int
    clients: Callable[[], list[int]] = lambda: [os.getpid()]

    def cpu(self) -> dict[str, float]:
        """Cumulative CPU seconds by name of `PROCESSES` (writers: 0, added later)."""
        return {
            "serve": cpu_seconds(self.serve),
            "capture": cpu_seconds(self.capture),
            "clients": sum(cpu_seconds(pid) for pid in self.clients()),
            "writers": 0.0,
            "walsender": cpu_seconds(self.walsender),
            "postgres": tree_cpu_seconds(self.postmaster, leave_out=self.walsender),
            "redis": cpu_seconds(self.redis),
            "machine": machine_busy_seconds(),
        }

    def waits(self) -> dict[str, float]:
        """Cumulative seconds waiting for a CPU, by name (those measured)."""
        return {
            "serve": runq_seconds(self.serve),
            "capture": runq_seconds(self.capture),
            "clients": sum(runq_seconds(pid) for pid in self.clients()),
            "walsender": runq_seconds(self.walsender),
            "redis": runq_seconds(self.redis),
        }


@dataclass
class Stages:
    """What one phase sampled: the largest value of each stage's lag, and CPU seconds."""

    wal_to_sent_kb: float = math.nan
    wal_to_feed_kb: float = math.nan
    slot_kb: float = math.nan
    flush_lag_s: float = math.nan
    tailer_lag_s: float = math.nan
    behind: float = math.nan
    loop_lag_s: float = math.nan
    cpu_s: dict[str, float] = field(default_factory=dict)  # PROCESSES, and "machine"
    wait_s: dict[str, float] = field(default_factory=dict)  # runnable, waiting for a CPU
    wall_s: float = math.nan  # the phase's writing and drain

    def take(self, sample: dict[str, float]) -> None:
        for name, value in sample.items():
            if not math.isnan(value):
                old = getattr(self, name)
                setattr(self, name, value if math.isnan(old) else max(old, value))


class Sampler:
    """Samples the stages every INTERVAL_S from `start` until `stop`."""

    def __init__(self, url: str, redis_url: str, metrics_url: str, database: str) -> None:
        self.url, self.redis_url, self.metrics_url = url, redis_url, metrics_url
        self.stream = f"pgsift:{{{database}}}:feed"
        self.stages = Stages()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stages = Stages()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> Stages:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.stages

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn, \
                httpx.AsyncClient() as http, redis.asyncio.Redis.from_url(self.redis_url) as feed:
            while True:
                self.stages.take(await self._sample(conn, feed, http))
                due = time.monotonic() + INTERVAL_S
                await asyncio.sleep(INTERVAL_S)
                self.stages.take({"loop_lag_s": time.monotonic() - due})

    async def _sample(self, conn: psycopg.AsyncConnection[tuple[float, ...]],
                      feed: redis.asyncio.Redis[bytes],
                      http: httpx.AsyncClient) -> dict[str, float]:
        newest = await feed.xrevrange(self.stream, count=1)
        feed_lsn = int(newest[0][0].split(b"-")[0]) if newest else 0
        cursor = await conn.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn,"
            " (SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots"
            "   WHERE database = current_database() AND slot_type = 'logical'),"
            " (SELECT pg_current_wal_lsn() - sent_lsn FROM pg_stat_replication"
            "   WHERE application_name = 'pgsift capture'),"
            " (SELECT extract(epoch FROM flush_lag) FROM pg_stat_replication"
            "   WHERE application_name = 'pgsift capture')"
        )
        wal, slot, sent, flush_lag = (nan_if_none(v) for v in (await cursor.fetchone() or ()))
        metrics = parse_metrics((await http.get(self.metrics_url)).text)
        return {
            "wal_to_sent_kb": sent / 1024,
            "wal_to_feed_kb": max(0.0, wal - feed_lsn) / 1024 if feed_lsn else math.nan,
            "slot_kb": slot / 1024,
            "flush_lag_s": flush_lag,
            "tailer_lag_s": metrics.get("pgsift_gateway_feed_lag_seconds", math.nan),
            "behind": metrics.get("pgsift_feed_entries_behind", math.nan),
        }


def nan_if_none(value: object) -> float:
    return math.nan if value is None else float(str(value))


def parse_metrics(text: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            found[name] = float(value)
    return found


def walsender_pid(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_replication WHERE application_name = 'pgsift capture'"
        ).fetchone()
    if row is None:
        raise SystemExit("no walsender for capture")
    return int(row[0])


STAGES_HEADER = (f"{'':30} {'asked/s':>8} {'reached/s':>9} {'wal>sent kB':>11}"
                 f" {'wal>feed kB':>11} {'slot kB':>8} {'flush lag s':>11}"
                 f" {'tailer lag s':>12} {'behind':>6} {'loop lag s':>10} {'client p50 s':>12}"
                 f" {'client p99 s':>12}")
CPU_HEADER = (f"{'':30} {'reached/s':>9} "
              + " ".join(f"{name:>9}" for name in PROCESSES)
              + f" {'sum':>7} {'cores@rate':>10} {'cores used':>10} {'others':>6} {'machine':>7}")
WAITED = ("serve", "capture", "clients", "walsender", "redis")
WAIT_HEADER = f"{'':30} {'reached/s':>9} " + " ".join(f"{name:>9}" for name in WAITED)


def stage_line(name: str, asked: float, reached: float, s: Stages, p50_ms: float,
               p99_ms: float) -> str:
    return (f"{name:30} {asked:>8.0f} {reached:>9.0f} {s.wal_to_sent_kb:>11.0f}"
            f" {s.wal_to_feed_kb:>11.0f} {s.slot_kb:>8.0f} {s.flush_lag_s:>11.2f}"
            f" {s.tailer_lag_s:>12.2f} {s.behind:>6.0f} {s.loop_lag_s:>10.2f}"
            f" {p50_ms / 1000:>12.2f} {p99_ms / 1000:>12.2f}")


def cpu_line(name: str, reached: float, commits: int, s: Stages) -> str:
    """CPU ms per 1,000 commits of each process; cores@rate: what the reached rate
    demands (CPU per commit x commits per second); cores used: CPU / the phase's wall time."""
    per_1k = {p: s.cpu_s.get(p, math.nan) / max(commits, 1) * 1e6 for p in PROCESSES}
    total = sum(per_1k.values())
    used = sum(s.cpu_s[p] for p in PROCESSES) / s.wall_s
    machine = s.cpu_s["machine"] / s.wall_s
    return (f"{name:30} {reached:>9.0f} " + " ".join(f"{per_1k[p]:>9.0f}" for p in PROCESSES)
            + f" {total:>7.0f} {total * reached / 1e6:>10.2f} {used:>10.2f}"
            + f" {machine - used:>6.2f} {machine:>7.2f}")


def wait_line(name: str, reached: float, s: Stages) -> str:
    """The share of the phase's wall time each process spent runnable, waiting for a CPU."""
    return (f"{name:30} {reached:>9.0f} "
            + " ".join(f"{s.wait_s.get(p, math.nan) / s.wall_s:>9.0%}" for p in WAITED))
