"""Both dump stores: a dump is visible only once complete, and reads back exactly."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.file_store import BUILDING, FileDumpStore
from pgsift.middleware.dumps.format import (
    BodyWriter,
    DumpHeader,
    DumpTrailer,
    body_rows,
    row_line,
)
from pgsift.middleware.dumps.redis_store import RedisDumpStore
from pgsift.middleware.dumps.store import DumpStore
from pgsift.middleware.errors import DumpError
from pgsift.middleware.redis_clients import sync_redis

DB = "appdb"


def header(shape_key: str = "shape1", built_at: float | None = None) -> DumpHeader:
    return DumpHeader(
        shape_key=shape_key, table="public.t", columns=("id", "v"), types=("int8", "text"),
        schema_hash="h", snapshot=Snapshot(10, 12, frozenset({11})), feed_position="5-0",
        built_at=time.time() if built_at is None else built_at,
    )


@pytest.fixture(params=["redis", "cluster", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DumpStore]:
    if request.param == "file":
        yield FileDumpStore(tmp_path / "dumps", DB)
        return
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    client = sync_redis(request.getfixturevalue(fixture))
    yield RedisDumpStore(client, DB)
    client.close()


def test_a_dump_is_invisible_until_published_then_reads_back(store: DumpStore) -> None:
    rows = [{"id": n, "v": "x" * (n % 50)} for n in range(3000)]
    head = header()
    body = BodyWriter(head, chunk_bytes=1000)
    writer = store.begin(head)
    for row in rows:
        for chunk in body.write(row_line(row), 1):
            writer.write(chunk)
            assert store.dumps("shape1") == []
    for chunk in body.finish():
        writer.write(chunk)
    assert store.all_dumps() == []
    info = writer.publish(body.trailer(time.time()))
    assert store.dumps("shape1") == [info]
    assert list(body_rows(store.body(info), info.trailer)) == rows
    store.delete(info)
    assert store.dumps("shape1") == []


def test_aborted_builds_leave_nothing(store: DumpStore) -> None:
    writer = store.begin(header())
    writer.write(b"partial")
    writer.abort()
    assert store.all_dumps() == []


def test_newest_first_across_shapes(store: DumpStore) -> None:
    published = []
    for n, shape in enumerate(["a", "b", "a"]):
        head = header(shape, built_at=1000.0 + n)
        writer = store.begin(head)
        body = BodyWriter(head)
        for chunk in body.finish():
            writer.write(chunk)
        published.append(writer.publish(body.trailer(1.0)))
    assert [i.dump_id for i in store.dumps("a")] == [published[2].dump_id, published[0].dump_id]
    assert len(store.all_dumps()) == 3


def test_redis_bodies_of_unfinished_builds_expire(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    writer = RedisDumpStore(client, DB).begin(header())
    writer.write(b"chunk")
    assert client.ttl(keys.dump_body(DB, writer.dump_id)) > 0
    client.close()


def test_file_store_sweeps_abandoned_build_directories(tmp_path: Path) -> None:
    store = FileDumpStore(tmp_path, DB)
    # What a killed build leaves behind.
    (store.root / BUILDING / "0000000000001-dead").mkdir()
    (store.root / BUILDING / "0000000000001-dead" / "body.zst").write_bytes(b"chunk")
    old = time.time() - 7200
    for path in (store.root / BUILDING).rglob("*"):
        os.utime(path, (old, old))
    assert store.sweep_abandoned(3600) == 1
    assert list((store.root / BUILDING).iterdir()) == []


def _redis_writer(client: redis.Redis[bytes], chunks: int) -> tuple[RedisDumpStore, Any]:
    store = RedisDumpStore(client, DB)
    writer = store.begin(header())
    for n in range(chunks):
        writer.write(b"chunk %d" % n)
    return store, writer


def test_a_redis_body_that_expired_before_publish_is_never_published(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store, writer = _redis_writer(client, 3)
    client.delete(keys.dump_body(DB, writer.dump_id))  # what its expiry does
    with pytest.raises(DumpError, match="0 of its 3 chunks"):
        writer.publish(DumpTrailer(count=0, checksum="x", body_bytes=0, raw_bytes=0,
                                   finished_at=time.time()))
    assert store.all_dumps() == []
    assert client.get(keys.dump_meta(DB, writer.dump_id)) is None
    client.close()


def test_a_redis_body_whose_early_chunks_expired_fails_the_build(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store, writer = _redis_writer(client, 2)
    client.delete(keys.dump_body(DB, writer.dump_id))
    with pytest.raises(DumpError, match="1 of its 3 chunks"):
        writer.write(b"chunk 2")  # a new hash, without chunks 0 and 1
    with pytest.raises(DumpError):
        writer.keep_alive()
    writer.abort()
    assert store.all_dumps() == []
    assert not client.exists(keys.dump_body(DB, writer.dump_id))
    client.close()


def test_keep_alive_pushes_a_redis_body_expiry_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    _, writer = _redis_writer(client, 1)
    body = keys.dump_body(DB, writer.dump_id)
    client.expire(body, 5)
    writer.keep_alive()
    assert client.ttl(body) > 5
    client.close()
