"""Dumps in Redis: the compressed body in a hash of chunks, published with MULTI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.format import DumpHeader, DumpTrailer
from pgsift.middleware.dumps.store import DumpInfo, new_dump_id
from pgsift.middleware.errors import DumpError

# A build refreshes this expiry on every chunk; a killed build's chunks vanish after it.
BUILDING_TTL_S = 600
# Chunks fetched per round trip when reading a body.
READ_BATCH = 8


class RedisDumpWriter:
    def __init__(self, store: RedisDumpStore, header: DumpHeader) -> None:
        self.store = store
        self.header = header
        self.dump_id = new_dump_id(header.built_at)
        self._body = keys.dump_body(store.database, self.dump_id)
        self._chunks = 0

    def write(self, chunk: bytes) -> None:
        with self.store.client.pipeline(transaction=False) as pipe:
            pipe.hset(self._body, str(self._chunks), chunk)
            pipe.expire(self._body, BUILDING_TTL_S)
            pipe.hlen(self._body)
            stored = pipe.execute()[-1]
        self._chunks += 1
        # The body expired since the last write (a stall longer than BUILDING_TTL_S):
        # its earlier chunks are gone, and HSET started a new hash without them.
        self._check(int(stored))

    def keep_alive(self) -> None:
        """Push the body's expiry back while no chunk is due (a slow, selective scan)."""
        if self._chunks:
            self._check(int(self.store.client.hlen(self._body)))
            self.store.client.expire(self._body, BUILDING_TTL_S)

    def publish(self, trailer: DumpTrailer) -> DumpInfo:
        database, shape = self.store.database, self.header.shape_key
        meta = {"header": self.header.to_json(), "trailer": trailer.to_json(),
                "chunks": self._chunks}
        # One transaction: readers see the meta, the whole body and the index
        # entry together or not at all; and only a whole body (WATCH: it cannot
        # expire between the check and EXEC unnoticed).
        with self.store.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self._body)
                stored: Any = pipe.hlen(self._body)  # immediate while WATCHing
                self._check(int(stored))
                pipe.multi()
                pipe.set(keys.dump_meta(database, self.dump_id), json.dumps(meta))
                pipe.persist(self._body)
                pipe.zadd(keys.dump_index(database, shape), {self.dump_id: self.header.built_at})
                pipe.sadd(keys.dump_shapes(database), shape)
                pipe.execute()
            except redis.WatchError as exc:
                raise DumpError(
                    f"dump {self.dump_id}: its body expired while being published"
                ) from exc
        return DumpInfo(self.dump_id, self.header, trailer)

    def _check(self, stored: int) -> None:
        if stored != self._chunks:
            raise DumpError(
                f"dump {self.dump_id}: {stored} of its {self._chunks} chunks are in Redis "
                f"(the unfinished body expired: no write for {BUILDING_TTL_S} s)"
            )

    def abort(self) -> None:
        self.store.client.delete(self._body)


class RedisDumpStore:
    """`DumpStore` on the Redis that also holds the feed."""

    def __init__(self, client: redis.Redis[bytes], database: str) -> None:
        self.client = client
        self.database = database

    def begin(self, header: DumpHeader) -> RedisDumpWriter:
        return RedisDumpWriter(self, header)

    def dumps(self, shape_key: str) -> list[DumpInfo]:
        ids = self.client.zrevrange(keys.dump_index(self.database, shape_key), 0, -1)
        return self._infos([_text(i) for i in ids])

    def shape_keys(self) -> set[str]:
        return {_text(s) for s in self.client.smembers(keys.dump_shapes(self.database))}

    def all_dumps(self) -> list[DumpInfo]:
        shapes = sorted(self.shape_keys())
        return [info for shape in shapes for info in self.dumps(shape)]

    def body(self, info: DumpInfo) -> Iterator[bytes]:
        key = keys.dump_body(self.database, info.dump_id)
        total = self._chunk_count(info.dump_id)
        for first in range(0, total, READ_BATCH):
            fields = [str(n) for n in range(first, min(first + READ_BATCH, total))]
            for n, chunk in zip(fields, self.client.hmget(key, fields), strict=True):
                if chunk is None:
                    raise DumpError(f"dump {info.dump_id} lost chunk {n} (dropped while read?)")
                yield bytes(chunk)

    def delete(self, info: DumpInfo) -> None:
        database = self.database
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.dump_index(database, info.header.shape_key), info.dump_id)
            pipe.delete(keys.dump_meta(database, info.dump_id))
            pipe.delete(keys.dump_body(database, info.dump_id))
            pipe.execute()

    def sweep_abandoned(self, older_than_s: float) -> int:
        # Unpublished bodies carry an expiry and go away by themselves.
        return 0

    def _chunk_count(self, dump_id: str) -> int:
        raw = self.client.get(keys.dump_meta(self.database, dump_id))
        if raw is None:
            raise DumpError(f"dump {dump_id} is gone")
        return int(json.loads(raw)["chunks"])

    def _infos(self, ids: list[str]) -> list[DumpInfo]:
        if not ids:
            return []
        raws = self.client.mget([keys.dump_meta(self.database, i) for i in ids])
        return [_info(i, json.loads(raw)) for i, raw in zip(ids, raws, strict=True) if raw]


def _info(dump_id: str, meta: dict[str, Any]) -> DumpInfo:
    return DumpInfo(dump_id, DumpHeader.from_json(meta["header"]),
                    DumpTrailer.from_json(meta["trailer"]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

