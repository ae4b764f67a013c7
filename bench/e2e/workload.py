"""The e2e benchmark's writers, and what each subscription must receive because of them.

A writer commits single-statement transactions at a target rate (updates of a
row's value, moves to another bucket, inserts, deletes) and records, from the
statements' RETURNING, every change each bucket's subscription must get: a row
token `(bucket, id, ts µs)` for each new row version in a bucket, a delete
token `(bucket, id)` for each row leaving one. The tokens go back through a
file when the writer ends, with the number of commits and the seconds taken.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.pool
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROWS_PER_BUCKET = 5
RowToken = tuple[int, int, int]  # bucket, id, ts in µs
DeleteToken = tuple[int, int]  # bucket, id


def micros(ts: Any) -> int:
    return round(ts.timestamp() * 1_000_000)


@dataclass
class Written:
    """What the writers of one phase committed and what that means for the clients."""

    commits: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # the writer processes' user+system seconds
    rows: set[RowToken] = field(default_factory=set)
    deletes: Counter[DeleteToken] = field(default_factory=Counter)


def writer(
    url: str, tps: float, seconds: float, buckets: int, seed: int, writers: int,
    next_id: int, out: str,
) -> None:
    """Commit ~tps transactions for `seconds` on rows of buckets < `buckets` (the rows
    whose id is `seed` modulo `writers`: writers never touch each other's rows)."""
    rng = random.Random(seed)
    rows: list[RowToken] = []
    deletes: list[DeleteToken] = []
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM items WHERE bucket < %s AND id %% %s = %s", [buckets, writers, seed]
        ).fetchall()]
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            ahead = n / tps - elapsed
            if ahead > 0:
                time.sleep(ahead)
            n += 1
            kind = rng.random()
            if kind < 0.7 or len(ids) < 10:
                row_id = rng.choice(ids)
                got = conn.execute(
                    "UPDATE items SET value = value + 1, ts = clock_timestamp() WHERE id = %s"
                    " RETURNING bucket, ts", [row_id],
                ).fetchone()
                if got:
                    rows.append((got[0], row_id, micros(got[1])))
            elif kind < 0.8:
                row_id = rng.choice(ids)
                got = conn.execute(
                    "UPDATE items i SET bucket = %s, ts = clock_timestamp()"
                    " FROM (SELECT id, bucket FROM items WHERE id = %s FOR UPDATE) o"
                    " WHERE i.id = o.id RETURNING o.bucket, i.bucket, i.ts",
                    [rng.randrange(buckets), row_id],
                ).fetchone()
                if got:
                    if got[0] != got[1]:
                        deletes.append((got[0], row_id))
                    rows.append((got[1], row_id, micros(got[2])))
            elif kind < 0.9:
                next_id += 1
                ids.append(next_id)
                got = conn.execute(
                    "INSERT INTO items (id, bucket, value, payload) VALUES (%s, %s, 0, 'new')"
                    " RETURNING bucket, ts", [next_id, rng.randrange(buckets)],
                ).fetchone()
                if got:
                    rows.append((got[0], next_id, micros(got[1])))
            else:
                victim = ids.pop(rng.randrange(len(ids)))
                got = conn.execute(
                    "DELETE FROM items WHERE id = %s RETURNING bucket", [victim]
                ).fetchone()
                if got:
                    deletes.append((got[0], victim))
        taken = time.perf_counter() - start
    Path(out).write_text(json.dumps({"commits": n, "seconds": taken, "rows": rows,
                                     "deletes": deletes, "cpu": time.process_time()}))


def write(url: str, tps: float, seconds: float, buckets: int, folder: Path) -> Written:
    """Run writers (one per 1,000 tx/s asked, on disjoint rows) to the end; what they wrote."""
    count = max(1, round(tps / 1000))
    paths = [folder / f"writer-{i}.json" for i in range(count)]
    with psycopg.connect(url) as conn:
        top = conn.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()
    first_id = (top[0] if top else 0) + 1  # new rows: a range of a million ids per writer
    processes = [
        multiprocessing.Process(
            target=writer,
            args=(url, tps / count, seconds, buckets, i, count, first_id + i * 1_000_000,
                  str(path)),
        )
        for i, path in enumerate(paths)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    written = Written()
    for path in paths:
        if not path.exists():
            print(f"a writer failed ({path.name}): its commits are not counted", flush=True)
            continue
        part = json.loads(path.read_text())
        written.commits += part["commits"]
        written.seconds = max(written.seconds, part["seconds"])
        written.cpu_s += part["cpu"]
        written.rows.update(tuple(t) for t in part["rows"])
        written.deletes.update(tuple(t) for t in part["deletes"])
        path.unlink()
    return written


def start_writing(url: str, tps: float, seconds: float, buckets: int,
                  folder: Path) -> multiprocessing.pool.AsyncResult[Written]:
    """`write` in the background (a thread of a pool), so that the clients keep reading."""
    pool = multiprocessing.pool.ThreadPool(1)
    result = pool.apply_async(write, (url, tps, seconds, buckets, folder))
    pool.close()
    return result
