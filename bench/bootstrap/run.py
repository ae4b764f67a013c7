"""Bootstrap benchmark: a big shape served from a pre-built dump vs streamed live from Postgres.

    .venv/bin/python bench/bootstrap/run.py [--issues 1000000] [--format-sample 100000]

Throwaway Postgres and Redis; the example issue tracker's schema seeded with
`--issues` issues (a comparable `issues` table if examples/issue_tracker is
missing). The gateway is a separate process (uvicorn + the bootstrap endpoint)
so its RSS is measured alone: peak growth over its RSS before each request.
Baseline (live from Postgres) and dump are measured in the same run. Also a
table of the dump format choice (NDJSON vs msgpack, zstd levels) on a sample.

    .venv/bin/python bench/bootstrap/run.py --issues 300000 --clients 4 \
        --baseline-tree /tmp/pgsift-before [--only-clients]

also measures rows/s of one client and of `--clients` concurrent clients (live,
then from the dump), served by this tree's gateway and - in the same run, on the
same data - by the gateway of another checkout with its own `.venv` (e.g. the
commit before a change): the "clients" table. `--only-clients` skips the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgpack  # type: ignore[import-untyped]
import psycopg
import zstandard

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # examples/ is not an installed package

from pgsift.middleware.bootstrap.encoder import RowEncoder  # noqa: E402
from pgsift.middleware.dumps.format import row_line  # noqa: E402
from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from pgsift.middleware.embedded.ports import free_port  # noqa: E402
from pgsift.middleware.settings import Settings  # noqa: E402
from pgsift.subscriptions.wire import RowWire  # noqa: E402

QUERY = ("SELECT id, team_id, number, creator_id, assignee_id, title, status, priority, "
         "estimate, tags, due, created_at, updated_at FROM issues")
FALLBACK_SCHEMA = """
CREATE TYPE issue_status AS ENUM ('backlog', 'todo', 'in_progress', 'in_review', 'done');
CREATE TABLE issues (
    id bigint PRIMARY KEY, team_id bigint NOT NULL, number int NOT NULL, creator_id bigint,
    assignee_id bigint, title text NOT NULL, status issue_status NOT NULL,
    priority smallint NOT NULL, estimate numeric(5, 1), tags text[] NOT NULL, due date,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO issues SELECT n, n % 50, n / 50, n % 997, nullif(n % 13, 0),
    'Issue ' || n || ' ' || md5(n::text), (enum_range(NULL::issue_status))[n % 5 + 1],
    n % 5, CASE WHEN n % 3 = 0 THEN (n % 20) / 2.0 END, ARRAY['bug', 'p' || n % 4],
    CASE WHEN n % 4 = 0 THEN date '2026-01-01' + n % 300 END,
    timestamptz '2025-01-01' + n * interval '7 seconds', now()
FROM generate_series(1, %s) AS n;
"""


def seed(url: str, issues: int) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            from examples.issue_tracker.dataset import seed as seed_example
            from examples.issue_tracker.schema import apply_schema
        except ImportError:
            conn.execute(FALLBACK_SCHEMA.replace("%s", str(int(issues))))
            return "fallback issues table"
        apply_schema(conn)
        seed_example(conn, issues=issues, seed=1, comments_per_issue=0.0)
        conn.execute("VACUUM ANALYZE issues")
        return "examples/issue_tracker schema"


# -- the gateway process ----------------------------------------------------------------


def serve_gateway(port: int) -> None:
    """Run in the child: the bootstrap endpoint alone, anonymous auth, settings from env."""
    import uvicorn
    from starlette.applications import Starlette

    from pgsift.middleware.bootstrap.http import BootstrapService, bootstrap_route
    from pgsift.middleware.gateway.auth import Authenticator

    settings = Settings(database_url=os.environ["PGSIFT_DATABASE_URL"],
                        redis_url=os.environ["PGSIFT_REDIS_URL"], dumps_max_age_s=3600.0)
    app = Starlette(routes=[bootstrap_route(BootstrapService.from_settings(settings))])
    app.state.authenticator = Authenticator(anonymous=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def gateway(database_url: str, redis_url: str,
            tree: Path | None = None) -> Iterator[tuple[str, int]]:
    """The gateway in a child process: this tree's, or `tree`'s (its .venv, its run.py)."""
    port = free_port()
    env = {**os.environ, "PGSIFT_DATABASE_URL": database_url, "PGSIFT_REDIS_URL": redis_url}
    python, script = sys.executable, __file__
    if tree is not None:
        python = str(tree / ".venv" / "bin" / "python")
        script = str(tree / "bench" / "bootstrap" / "run.py")
    child = subprocess.Popen([python, script, "--serve-gateway", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.1)
        yield base, child.pid
    finally:
        child.terminate()
        child.wait(timeout=30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fetch(base: str, pid: int, encoding: str, query: str = QUERY) -> dict[str, Any]:
    """Time to last byte and peak gateway RSS growth for one bootstrap."""
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    wire = 0
    tail = b""
    with httpx.Client(timeout=600) as client, client.stream(
        "GET", base + "/v1/bootstrap", params={"query": query},
        headers={"Accept-Encoding": encoding},
    ) as response:
        response.raise_for_status()
        source = response.headers["x-pgsift-source"]
        # Decoded bytes: what a client gets to parse; the end line proves completeness.
        for block in response.iter_bytes():
            wire += len(block)
            tail = (tail + block)[-300:]
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    end = json.loads(tail.splitlines()[-1])
    assert end["type"] == "end", end
    return {"source": source, "encoding": encoding, "seconds": seconds, "rows": end["count"],
            "mb": wire / 1e6, "rss_growth_mb": peak - before}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrent(base: str, clients: int, pid: int) -> dict[str, Any]:
    """`clients` bootstraps of the whole shape at once (identity encoding): rows/s of all
    of them together, from the first request to the last byte of the last response, and
    the gateway's CPU time per row (on a shared machine steadier than wall time)."""
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(fetch(base, os.getpid(), "identity"))
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    cpu_before = cpu_s(pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = cpu_s(pid) - cpu_before
    if errors:
        raise errors[0]
    rows = sum(r["rows"] for r in results)
    return {"source": results[0]["source"], "clients": clients, "rows": rows,
            "seconds": seconds, "rows_per_s": rows / seconds, "cpu_us_row": cpu * 1e6 / rows,
            "slowest_s": max(r["seconds"] for r in results)}


def clients_table(pg_url: str, rd_url: str, trees: Sequence[tuple[str, Path | None]],
                  clients: int, repeat: int) -> list[dict[str, Any]]:
    """Rows/s of 1 and `clients` concurrent clients, live then from a dump, per tree: the
    median of `repeat` rounds, the trees taking turns in each (a shared machine's noise
    falls on both)."""
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for phase in ("live", "dump"):
        if phase == "dump":
            build_dump(pg_url, rd_url)
        for _ in range(repeat):
            for name, tree in trees:
                with gateway(pg_url, rd_url, tree) as (base, pid):
                    fetch(base, os.getpid(), "identity", QUERY + " WHERE id <= 100")  # warm-up
                    for n in (1, clients):
                        result = concurrent(base, n, pid)
                        assert result["source"] == phase, (phase, result)
                        runs.setdefault((phase, name, n), []).append(result)
    out = []
    for (_, name, _), results in runs.items():
        ordered = sorted(results, key=lambda r: r["rows_per_s"])
        out.append({"tree": name, **ordered[len(ordered) // 2]})
    return out


# -- dump build and format choice --------------------------------------------------------


def build_dump(database_url: str, redis_url: str) -> dict[str, Any]:
    from pgsift.workers.build import DumpBuilder
    from pgsift.workers.context import JobContext

    context = JobContext.from_settings(Settings(database_url=database_url, redis_url=redis_url))
    try:
        shape, layout = context.shape(QUERY)
        result = DumpBuilder(context).build(shape, layout)
    finally:
        context.close()
    return {"seconds": result.seconds, "rows": result.rows, "mb": result.body_bytes / 1e6,
            "raw_mb": result.raw_bytes / 1e6}


def format_table(database_url: str, redis_url: str, sample: int) -> list[tuple[str, ...]]:
    """Build and serve cost per format on a sample of the shape's rows."""
    from pgsift.workers.context import JobContext

    context = JobContext.from_settings(Settings(database_url=database_url, redis_url=redis_url))
    try:
        _, layout = context.shape(QUERY)
    finally:
        context.close()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(f"{QUERY} ORDER BY id LIMIT {int(sample)}").fetchall()
    names = list(layout.columns)
    wire = RowWire(layout.columns, layout.types)
    encoder = RowEncoder(wire)
    out: list[tuple[str, ...]] = []
    t0 = time.perf_counter()
    ndjson = encoder.encode(rows)
    t_ndjson = time.perf_counter() - t0
    t0 = time.perf_counter()
    to_wire = wire.values
    packed = b"".join(msgpack.packb(list(to_wire(row).values())) for row in rows)
    t_msgpack = time.perf_counter() - t0
    for name, data, t_encode in (("ndjson", ndjson, t_ndjson), ("msgpack", packed, t_msgpack)):
        for level in (1, 3, 6, 9):
            t0 = time.perf_counter()
            compressed = zstandard.ZstdCompressor(level=level).compress(data)
            t_compress = time.perf_counter() - t0
            t0 = time.perf_counter()
            raw = zstandard.ZstdDecompressor().decompress(compressed)
            if name == "msgpack":  # serving means turning it into wire NDJSON
                lines = [row_line(dict(zip(names, r, strict=True)))
                         for r in msgpack.Unpacker(raw_bytes_io(raw))]
                del lines
            t_serve = time.perf_counter() - t0
            out.append((name, str(level), f"{(t_encode + t_compress) * 1e6 / sample:.2f}",
                        f"{len(compressed) / sample:.1f}", f"{len(data) / len(compressed):.1f}x",
                        f"{t_serve * 1e6 / sample:.3f}"))
    return out


def flush_redis(url: str) -> None:
    """Forget the dumps (and everything else in Redis) of the clients table."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def raw_bytes_io(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--issues", type=int, default=1_000_000)
    parser.add_argument("--format-sample", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4,
                        help="concurrent clients of the clients table")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the clients table (the median is shown)")
    parser.add_argument("--baseline-tree", type=Path,
                        help="another checkout (with .venv) whose gateway is measured too")
    parser.add_argument("--only-clients", action="store_true",
                        help="measure the clients table only")
    parser.add_argument("--serve-gateway", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_gateway:
        serve_gateway(args.serve_gateway)
        return 0

    with EmbeddedPostgres() as pg, EmbeddedRedis() as rd:
        t0 = time.perf_counter()
        schema = seed(pg.url, args.issues)
        print(f"seeded {args.issues:,} issues ({schema}) in {time.perf_counter() - t0:.1f}s",
              flush=True)
        trees: list[tuple[str, Path | None]] = [("this tree", None)]
        if args.baseline_tree:
            trees.insert(0, (f"baseline {args.baseline_tree}", args.baseline_tree))
        table = clients_table(pg.url, rd.url, trees, args.clients, args.repeat)
        print_table(
            "clients: whole-shape bootstraps at once, identity encoding (rows/s of all "
            f"together; median of {args.repeat} rounds)",
            ["gateway", "source", "clients", "rows", "seconds", "rows/s", "slowest client s",
             "gateway CPU µs/row"],
            [(r["tree"], r["source"], str(r["clients"]), f"{r['rows']:,}",
              f"{r['seconds']:.2f}", f"{r['rows_per_s']:,.0f}", f"{r['slowest_s']:.2f}",
              f"{r['cpu_us_row']:.1f}")
             for r in table],
        )
        if args.only_clients:
            return 0
        flush_redis(rd.url)  # the rest starts without a dump, as before
        results = []
        with gateway(pg.url, rd.url) as (base, pid):
            fetch(base, pid, "identity", QUERY + " WHERE id <= 100")  # warm-up: catalog, imports
            results.append(fetch(base, pid, "identity"))
            results.append(fetch(base, pid, "zstd"))
            build = build_dump(pg.url, rd.url)
            for encoding in ("identity", "gzip", "zstd"):
                results.append(fetch(base, pid, encoding))
        formats = format_table(pg.url, rd.url, min(args.format_sample, args.issues))

    live = results[0]["seconds"]
    print_table(
        f"bootstrap of {results[0]['rows']:,} rows (gateway RSS growth = peak - before)",
        ["source", "encoding", "last byte s", "rows/s", "decoded MB", "RSS growth MB",
         "vs live"],
        [(r["source"], r["encoding"], f"{r['seconds']:.2f}", f"{r['rows'] / r['seconds']:,.0f}",
          f"{r['mb']:.0f}", f"{r['rss_growth_mb']:.1f}", f"{live / r['seconds']:.1f}x")
         for r in results],
    )
    print_table("dump build", ["rows", "seconds", "rows/s", "stored MB", "NDJSON MB"],
                [(f"{build['rows']:,}", f"{build['seconds']:.1f}",
                  f"{build['rows'] / build['seconds']:,.0f}", f"{build['mb']:.1f}",
                  f"{build['raw_mb']:.0f}")])
    print_table(f"dump format choice ({min(args.format_sample, args.issues):,}-row sample)",
                ["format", "zstd", "build µs/row", "bytes/row", "ratio", "serve µs/row"],
                formats)
    dump_best = min(r["seconds"] for r in results if r["source"] == "dump")
    worst_rss = max(r["rss_growth_mb"] for r in results)
    print(f"\ntarget: dump >= 5x faster than live: {live / dump_best:.1f}x; "
          f"RSS growth < 100 MB: worst {worst_rss:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
