"""Writes benchmark: mutations/s through the gateway vs the same statements sent directly,
and commit-to-confirmation latency at the client.

    .venv/bin/python bench/writes/run.py [--clients 16] [--seconds 10] [--batches 1,10,100]
        [--pool-size 16] [--rounds 2] [--rates 100,1000] [--client-rate 20]

Starts a throwaway Postgres (synchronous_commit on, as in production: the
embedded server's default, off, hands WAL to capture only at the WAL writer's
next round) and Redis and `pgsift serve` with one mutator, `add_task`: one
INSERT. Each of `--clients` concurrent clients (its own client id, its own
keep-alive HTTP connection) posts its mutations to `POST /v1/mutate` (through a
minimal keep-alive HTTP/1.1 client, `keepalive.KeepAlive`), N mutations a
request for each N of `--batches`, for `--seconds`; the gateway runs each in a
transaction of its own that also locks and advances the client's ledger row
(`pgsift.clients`). The baseline, in the
same run, on the same server: as many concurrent psycopg connections, each
running the same INSERT in a transaction of its own (BEGIN; INSERT; COMMIT), as
an app writing directly does. Ways alternate per round; the table shows the best
round of each. Every mutation sent is checked to have run exactly once.

Then `pgsift capture` starts and, for each of `--rates` (mutations/s in all),
rate / `--client-rate` clients each hold a websocket bound to their client id
(`clientId` in `connection_init`) with a `sync` subscription of their own tasks,
and make mutations paced open-loop, posted one request at a time with all those
made since the last (as the Python client sends its queue). Latency is from the row's
`clock_timestamp()` (the mutator's last statement, just before the commit) to
the arrival at the client of the `sync` message that carries the row and
`confirmed` for that mutation (one host: one clock). Every mutation must be
confirmed, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import confirm  # bench/writes/confirm.py: the latency half
import httpx
import jwt
import psycopg
from keepalive import KeepAlive

from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.mutations import ledger

PGSIFT = Path(sys.executable).with_name("pgsift")
SECRET = "bench-writes-secret-of-at-least-32-bytes"
INSERT = "INSERT INTO tasks (owner, title, created_at) VALUES (%s, %s, clock_timestamp())"
MUTATORS = f'''
from pgsift.middleware.mutations import Refused


def add_task(conn, args, claims):
    title = args.get("title")
    if not isinstance(title, str):
        raise Refused("title must be a string")
    conn.execute("{INSERT}", [claims["sub"], title])
'''


@dataclass(frozen=True)
class Round:
    way: str
    batch: int
    mutations: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.mutations / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batches", default="1,10,100", help="mutations per request, one row each")
    parser.add_argument(
        "--pool-size", type=int, default=16,
        help="mutations_pool_size (default: as many connections as the baseline uses)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rates", default="100,1000", help="mutations/s of the latency runs")
    parser.add_argument("--client-rate", type=int, default=20,
                        help="mutations/s of each latency client (a busy user)")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rates = [int(r) for r in args.rates.split(",")] if args.rates else []
    latencies: list[confirm.Latency] = []
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis_server, \
            tempfile.TemporaryDirectory() as app_dir:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET synchronous_commit = on")
        postgres.restart()
        url = setup_database(postgres.url)
        Path(app_dir, "bench_mutators.py").write_text(MUTATORS)
        config = Path(app_dir, "pgsift.toml")
        config.write_text(
            '[mutators]\nadd_task = "bench_mutators:add_task"\n'
            f"[mutations]\npool_size = {args.pool_size}\n"
            f'[auth]\njwt_secret = "{SECRET}"\n'
        )
        results: list[Round] = []
        with serve(url, redis_server.url, config, app_dir) as base_url:
            for _ in range(args.rounds):
                for batch in batches:
                    results.append(asyncio.run(through_gateway(args, base_url, batch)))
                results.append(asyncio.run(direct(args, url)))
            check_exactly_once(url, results)
            if rates:
                with confirm.capture(url, redis_server.url, config):
                    for rate in rates:
                        clients = max(1, -(-rate // args.client_rate))
                        latencies.append(asyncio.run(confirm.measure(
                            base_url, token_for, rate=rate, clients=clients,
                            seconds=args.latency_seconds)))
    print_table(args, batches, results)
    if latencies:
        confirm.print_table(latencies)


def token_for(user: str) -> str:
    return str(jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, SECRET,
                          algorithm="HS256"))


def setup_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    url = str(psycopg.conninfo.make_conninfo(admin_url, dbname="bench"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE tasks (id bigserial PRIMARY KEY, owner text NOT NULL,"
            " title text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("ALTER TABLE tasks REPLICA IDENTITY FULL")  # subscriptions filter it
        conn.execute(ledger.CREATE_SQL)
    return url


@contextlib.contextmanager
def serve(url: str, redis_url: str, config: Path, app_dir: str) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(PGSIFT), "--log-level", "WARNING", "serve", "--database-url", url,
         "--redis-url", redis_url, "--port", str(port), "--config", str(config)],
        cwd=app_dir, env={**os.environ, "PGSIFT_CONFIG": str(config)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit("pgsift serve exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz").status_code in (200, 503):
                    break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)


async def through_gateway(args: argparse.Namespace, base_url: str, batch: int) -> Round:
    deadline = time.monotonic() + args.seconds
    run = f"g{batch}-{time.monotonic_ns()}"

    async def client(number: int) -> int:
        token = jwt.encode({"sub": f"user{number}", "exp": int(time.time()) + 3600},
                           SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {token}"}
        client_id = f"{run}-{number}"
        sent = 0
        http = await KeepAlive.open(base_url)
        try:
            while time.monotonic() < deadline:
                mutations = [
                    {"id": sent + i + 1, "name": "add_task", "args": {"title": f"{run} t"}}
                    for i in range(batch)
                ]
                status, answer = await http.post(
                    "/v1/mutate", {"clientId": client_id, "mutations": mutations}, headers
                )
                if status != 200 or any(r["status"] != "ok" for r in answer["results"]):
                    raise SystemExit(f"unexpected answer: {status} {answer}")
                sent += batch
        finally:
            await http.close()
        return sent

    started = time.monotonic()
    counts = await asyncio.gather(*(client(n) for n in range(args.clients)))
    return Round(f"gateway, {batch} a request", batch, sum(counts), time.monotonic() - started)


async def direct(args: argparse.Namespace, url: str) -> Round:
    deadline = time.monotonic() + args.seconds

    async def client(number: int) -> int:
        sent = 0
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                async with conn.transaction():
                    await conn.execute(INSERT, [f"user{number}", "direct t"])
                sent += 1
        return sent

    started = time.monotonic()
    counts = await asyncio.gather(*(client(n) for n in range(args.clients)))
    return Round("psycopg direct (baseline)", 1, sum(counts), time.monotonic() - started)


def check_exactly_once(url: str, results: list[Round]) -> None:
    """Every mutation the gateway answered `ok` wrote one row, and its ledger says so."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM tasks WHERE title <> 'direct t'").fetchone()
        advanced = conn.execute("SELECT sum(last_mutation_id) FROM pgsift.clients").fetchone()
    sent = sum(r.mutations for r in results if r.way.startswith("gateway"))
    assert rows is not None and advanced is not None
    if not rows[0] == advanced[0] == sent:
        raise SystemExit(f"not exactly once: {sent} sent, {rows[0]} rows, ledger {advanced[0]}")


def print_table(args: argparse.Namespace, batches: list[int], results: list[Round]) -> None:
    best: dict[str, Round] = {}
    for r in results:
        if r.way not in best or r.rate > best[r.way].rate:
            best[r.way] = r
    baseline = best["psycopg direct (baseline)"]
    print(
        f"\n{args.clients} concurrent clients, {args.seconds:g} s a round, best of "
        f"{args.rounds} rounds, mutations_pool_size {args.pool_size}, "
        f"{os.cpu_count()} CPU(s) shared by Postgres, Redis, the gateway and the load\n"
    )
    header = f"{'way':32} {'mutations':>10} {'mutations/s':>12} {'vs direct':>10}"
    print(header)
    print("-" * len(header))
    for way in [f"gateway, {b} a request" for b in batches] + [baseline.way]:
        r = best[way]
        print(f"{way:32} {r.mutations:>10} {r.rate:>12.0f} {r.rate / baseline.rate:>9.0%}")
    print("\nevery gateway mutation ran exactly once (rows = ledger = mutations sent)")


if __name__ == "__main__":
    main()
