"""Commit-to-confirmation latency at the client, for bench/writes/run.py.

Each client: a websocket bound to its client id (`connection_init` `clientId`), a
`sync` subscription of its own tasks, and mutations made at its share of the rate
(open loop: the schedule does not slip), posted as the Python client posts its
queue: one request at a time, carrying every mutation made since the last one. A
mutation is confirmed when the message with `confirmed.lastMutationId` = its id
arrives; its latency runs from its row's `created_at` (`clock_timestamp()` in the
mutator, just before the commit) to that arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from keepalive import KeepAlive
from websockets.asyncio.client import ClientConnection, connect

PGSIFT = Path(sys.executable).with_name("pgsift")
SYNC = """subscription($query: String!, $owner: JSON) { sync(query: $query, params: $owner) {
  changes { row } cursor upToDate confirmed { lastMutationId status } } }"""
OWN_TASKS = "SELECT id, created_at FROM tasks WHERE owner = $1"
WAIT_S = 60.0


@dataclass(frozen=True)
class Latency:
    rate: int  # asked, mutations/s
    sent: int
    seconds: float
    samples: tuple[float, ...]  # seconds, one per confirmed mutation
    clients: int
    requests: int

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


@contextlib.contextmanager
def capture(url: str, redis_url: str, config: Path) -> Iterator[None]:
    """`pgsift capture --all --setup` until the block ends, once its slot is active."""
    process = subprocess.Popen(
        [str(PGSIFT), "--log-level", "WARNING", "capture", "--database-url", url,
         "--redis-url", redis_url, "--all", "--setup", "--config", str(config)]
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while not conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE active AND database = 'bench'"
            ).fetchone():
                if process.poll() is not None:
                    raise SystemExit("capture exited")
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


class Client:
    """One bound websocket and its keep-alive HTTP connection."""

    def __init__(self, base_url: str, token: str, client_id: str, owner: str) -> None:
        self.base_url, self.token, self.client_id, self.owner = base_url, token, client_id, owner
        self.next_id = 1
        self.requests = 0
        self.confirmed = 0
        self.arrived: dict[int, float] = {}  # mutation id -> time.time() of its confirmation
        self.committed: dict[int, float] = {}  # mutation id -> its row's created_at
        self.up_to_date = asyncio.Event()
        self.progress = asyncio.Event()
        self._ws: ClientConnection | None = None

    async def listen(self) -> None:
        url = self.base_url.replace("http://", "ws://") + "/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           proxy=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {
                "authorization": f"Bearer {self.token}", "clientId": self.client_id}}))
            ack = json.loads(await ws.recv())
            assert ack["type"] == "connection_ack", ack
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": SYNC, "variables": {"query": OWN_TASKS, "owner": [self.owner]}}}))
            async for frame in ws:
                now = time.time()
                message = json.loads(frame)
                if message.get("type") != "next":
                    raise SystemExit(f"unexpected frame: {message}")
                sync = message["payload"]["data"]["sync"]
                if sync["upToDate"]:
                    self.up_to_date.set()
                confirmed = sync["confirmed"]
                if confirmed is None:
                    continue
                last = int(confirmed["lastMutationId"])
                if last != self.confirmed + 1 or confirmed["status"] != "OK":
                    raise SystemExit(f"{self.client_id}: confirmed {confirmed} after "
                                     f"{self.confirmed}: not each mutation once, in order")
                self.confirmed = last
                self.arrived[last] = now
                for change in sync["changes"]:
                    at = datetime.fromisoformat(change["row"]["created_at"]).timestamp()
                    self.committed[last] = at
                self.progress.set()


async def measure(
    base_url: str, token_for: Callable[[str], str], *, rate: int, clients: int, seconds: float
) -> Latency:
    run = f"lat{rate}-{time.monotonic_ns()}"
    members = [Client(base_url, token_for(f"{run}-u{n}"), f"{run}-{n}", f"{run}-u{n}")
               for n in range(clients)]
    listeners = [asyncio.create_task(c.listen()) for c in members]
    try:
        ready = asyncio.ensure_future(asyncio.gather(*(c.up_to_date.wait() for c in members)))
        listeners_and_ready = [ready, *listeners]
        await asyncio.wait(listeners_and_ready, timeout=WAIT_S,
                           return_when=asyncio.FIRST_COMPLETED)
        for task in listeners:
            if task.done():
                task.result()  # a subscription that failed says why
        await asyncio.wait_for(ready, WAIT_S)
        interval = clients / rate
        started = time.monotonic()
        deadline = started + seconds

        async def send(client: Client, offset: float) -> int:
            http = await KeepAlive.open(base_url)
            headers = {"Authorization": f"Bearer {client.token}"}
            due = started + offset  # of the next mutation this client makes
            try:
                while due < deadline:
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    # Like the Python client: one request at a time, with every mutation
                    # made (fallen due) since the last one went out.
                    mutations = []
                    while due < deadline and due <= time.monotonic():
                        mutations.append({"id": client.next_id + len(mutations),
                                          "name": "add_task", "args": {"title": run}})
                        due += interval
                    status, answer = await http.post(
                        "/v1/mutate", {"clientId": client.client_id, "mutations": mutations},
                        headers)
                    if status != 200 or {r["status"] for r in answer["results"]} != {"ok"}:
                        raise SystemExit(f"unexpected answer: {status} {answer}")
                    client.next_id += len(mutations)
                    client.requests += 1
            finally:
                await http.close()
            return client.next_id - 1

        counts = await asyncio.gather(*(
            send(c, n * interval / clients) for n, c in enumerate(members)))
        elapsed = time.monotonic() - started
        async with asyncio.timeout(WAIT_S):
            for client, count in zip(members, counts, strict=True):
                while client.confirmed < count:
                    client.progress.clear()
                    await client.progress.wait()
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    samples = tuple(
        c.arrived[i] - c.committed[i] for c in members for i in c.arrived if i in c.committed)
    return Latency(rate, sum(counts), elapsed, samples, clients,
                   sum(c.requests for c in members))


def print_table(results: list[Latency]) -> None:
    print("\ncommit-to-confirmation at the client: clients with one websocket each (bound to "
          "its client id, one sync subscription), one request at a time with the mutations "
          "made since the last\n")
    header = (f"{'asked/s':>8} {'clients':>8} {'achieved/s':>11} {'per request':>12} "
              f"{'confirmed':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.rate:>8} {r.clients:>8} {r.sent / r.seconds:>11.0f} "
              f"{r.sent / max(1, r.requests):>12.1f} {len(r.samples):>10} "
              f"{r.percentile(0.5) * 1000:>8.1f} {r.percentile(0.99) * 1000:>8.1f} "
              f"{max(r.samples) * 1000:>8.1f}")
    median = statistics.median(s for r in results for s in r.samples)
    print(f"\nmedian of all samples {median * 1000:.1f} ms; every mutation confirmed once, "
          "in order, with its row")
