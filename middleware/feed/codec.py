"""FeedEntry <-> Redis stream fields: msgpack with extension types, zstd for big entries.

One field per stream entry. `b"m"` holds a msgpack document, `b"z"` the same
document zstd-compressed (chosen when it is larger than `COMPRESS_ABOVE` bytes:
a chunk of a big transaction repeats its column names in every row, which zstd
removes at ~1 GB/s). Every value type of `pgsift.subscriptions.pgtext` survives
the round trip exactly: msgpack carries None/bool/int/float/str/bytes/list/dict
natively (bytes and str stay apart), and the rest travel as extension types.
The LSN and chunk number are the stream ID itself and are not repeated inside.
Aware datetimes use msgpack's own Timestamp type (packed in C, the hot path
of capture) and come back in UTC - the same instant; pgsift's timestamptz
values are UTC anyway.
"""

from __future__ import annotations

import struct
import threading
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import starmap
from typing import Any
from uuid import UUID

import msgpack  # type: ignore[import-untyped]
import zstandard

from pgsift.middleware.errors import FeedError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import stream_id_key
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.jsonvalues import JSON_NULL

FORMAT_VERSION = 1
PLAIN_FIELD = b"m"
COMPRESSED_FIELD = b"z"
COMPRESS_ABOVE = 4096
ZSTD_LEVEL = 3

# Extension type codes: part of the stored format, never renumber.
EXT_DECIMAL = 1
EXT_DATETIME_NAIVE = 2
EXT_DATE = 3
EXT_TIME = 4
EXT_TIMEDELTA = 5
EXT_UUID = 6
EXT_BIGINT = 7
EXT_JSON_NULL = 8  # a json / jsonb value that is JSON `null` (not SQL NULL, which is nil)

_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICRO = timedelta(microseconds=1)
_I64 = struct.Struct("<q")
_TIMEDELTA = struct.Struct("<iiq")
_INT64_RANGE = range(-(2**63), 2**64)


def encode_entry(entry: FeedEntry) -> dict[str, bytes]:
    """The stream fields of `entry` (one field: plain or compressed msgpack)."""
    field, value = encode_field(entry)
    return {field.decode(): value}


def encode_field(entry: FeedEntry) -> tuple[bytes, bytes]:
    """`entry`'s one stream field: its name (`PLAIN_FIELD` or `COMPRESSED_FIELD`) and value."""
    document = [
        FORMAT_VERSION,
        entry.xid,
        entry.commit_time,
        entry.last,
        list(entry.schema_changes),
        [[c.table, c.op, c.key, c.new, c.old] for c in entry.changes],
    ]
    packed: bytes = _codecs.packer.pack(document)
    if len(packed) > COMPRESS_ABOVE:
        return COMPRESSED_FIELD, _codecs.compressor.compress(packed)
    return PLAIN_FIELD, packed


def decode_entry(stream_id: str | bytes, fields: dict[bytes, bytes]) -> FeedEntry:
    """The FeedEntry stored under `stream_id` with `fields` (as redis-py returns them)."""
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    if PLAIN_FIELD in fields:
        packed = fields[PLAIN_FIELD]
    elif COMPRESSED_FIELD in fields:
        packed = _codecs.decompressor.decompress(fields[COMPRESSED_FIELD])
    else:
        raise FeedError(f"feed entry {sid} has no pgsift payload (fields: {sorted(fields)})")
    try:
        version, xid, commit_time, last, schema_changes, changes = msgpack.unpackb(
            packed, ext_hook=_decode_ext, raw=False, strict_map_key=False, timestamp=3
        )
    except (ValueError, TypeError, msgpack.ExtraData) as exc:
        raise FeedError(f"feed entry {sid} is not a valid pgsift entry: {exc}") from exc
    if version != FORMAT_VERSION:
        raise FeedError(f"feed entry {sid} has format version {version}, expected {FORMAT_VERSION}")
    lsn, chunk = stream_id_key(sid)
    return FeedEntry(
        lsn=lsn,
        xid=xid,
        commit_time=commit_time,
        changes=tuple(starmap(Change, changes)),  # [table, op, key, new, old] each
        chunk=chunk,
        last=last,
        schema_changes=tuple(schema_changes),
    )


# ExtType's own constructor re-validates its arguments: measurable at a million
# values a second, and ours are right by construction.
_new_ext = tuple.__new__


def _ext(code: int, data: bytes) -> msgpack.ExtType:
    return _new_ext(msgpack.ExtType, (code, data))


_JSON_NULL_EXT = _ext(EXT_JSON_NULL, b"")


def _encode_value(value: Any) -> msgpack.ExtType:
    # Called by msgpack only for what it cannot pack itself.
    kind = type(value)
    if kind is Decimal:  # the common one (numeric columns): inlined
        return _new_ext(msgpack.ExtType, (EXT_DECIMAL, str(value).encode()))
    if kind is datetime:  # naive: aware ones are msgpack Timestamps
        return _ext(EXT_DATETIME_NAIVE, _I64.pack((value - _EPOCH_NAIVE) // _MICRO))
    if kind is date:
        return _ext(EXT_DATE, _I64.pack(value.toordinal()))
    if kind is time:
        return _ext(EXT_TIME, value.isoformat().encode())
    if kind is timedelta:
        return _ext(EXT_TIMEDELTA, _TIMEDELTA.pack(value.days, value.seconds, value.microseconds))
    if kind is UUID:
        return _ext(EXT_UUID, value.bytes)
    if value is JSON_NULL:
        return _JSON_NULL_EXT
    if isinstance(value, int) and value not in _INT64_RANGE:
        return _ext(EXT_BIGINT, str(value).encode())
    if isinstance(value, tuple):
        raise TypeError("tuples do not survive the feed; use lists")
    raise TypeError(f"cannot store a {type(value).__name__} in the feed: {value!r}")


def _decode_ext(code: int, data: bytes) -> Any:
    if code == EXT_DECIMAL:
        return Decimal(data.decode())
    if code == EXT_DATETIME_NAIVE:
        return _EPOCH_NAIVE + _I64.unpack(data)[0] * _MICRO
    if code == EXT_DATE:
        return date.fromordinal(_I64.unpack(data)[0])
    if code == EXT_TIME:
        return time.fromisoformat(data.decode())
    if code == EXT_TIMEDELTA:
        days, seconds, micros = _TIMEDELTA.unpack(data)
        return timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == EXT_UUID:
        return UUID(bytes=data)
    if code == EXT_BIGINT:
        return int(data.decode())
    if code == EXT_JSON_NULL:
        return JSON_NULL
    raise FeedError(f"unknown extension type {code} in a feed entry")


class _Codecs(threading.local):
    """Per thread, made once: zstd (de)compressors may not be shared between threads,
    and msgpack.packb would build a new Packer per call, costing as much as packing
    a one-row entry."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(default=_encode_value, use_bin_type=True, datetime=True)
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_codecs = _Codecs()
