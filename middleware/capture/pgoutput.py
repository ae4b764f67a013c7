"""pgoutput messages: bytes in, immutable records out (pure, no I/O).

Protocol version 1, and version 2 with streaming off (the only difference is
an xid field that appears in streamed transactions alone). The wire format is
Postgres's "Logical Replication Message Formats": big-endian integers,
NUL-terminated strings, LSNs as Int64, timestamps as microseconds since
2000-01-01 UTC.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pgsift.middleware.errors import CaptureError
from pgsift.subscriptions.records import record

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# TupleData column kinds.
NULL = ord("n")
UNCHANGED_TOAST = ord("u")
TEXT = ord("t")
BINARY = ord("b")

# Relation.replica_identity settings (pg_class.relreplident).
IDENTITY_DEFAULT = "d"
IDENTITY_NOTHING = "n"
IDENTITY_FULL = "f"
IDENTITY_INDEX = "i"

_HEADER = struct.Struct(">I")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")
_ORIGIN = struct.Struct(">Q")
_LOGICAL = struct.Struct(">BQ")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_COLUMN_TAIL = struct.Struct(">Ii")
_TRUNCATE = struct.Struct(">IB")

TRUNCATE_CASCADE = 1
TRUNCATE_RESTART_IDENTITY = 2


@functools.lru_cache(maxsize=4)
def pg_timestamp(micros: int) -> datetime:
    """A protocol timestamp (microseconds since 2000-01-01 UTC) as an aware datetime.

    Cached: a transaction's Begin and Commit carry the same commit time, and the
    datetime arithmetic costs more than the rest of decoding a Begin.
    """
    return POSTGRES_EPOCH + timedelta(0, 0, micros)


@record
class TupleData:
    """One row image: per column a kind (`n`, `u`, `t`, `b`) and its bytes.

    `kinds[i]` is the byte value of the kind letter (compare with NULL,
    UNCHANGED_TOAST, TEXT, BINARY); `values[i]` holds the data for text and
    binary columns and None for null and unchanged-TOAST ones.
    """

    kinds: bytes
    values: tuple[bytes | None, ...]

    def __len__(self) -> int:
        return len(self.kinds)


@record
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@record
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@record
class Origin:
    lsn: int
    name: str


@record
class RelationColumn:
    """A column as pgoutput describes it; `is_key` marks the replica identity."""

    flags: int
    name: str
    type_oid: int
    type_modifier: int

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@record
class Relation:
    """A table's shape, sent before its first change and again after it changes.

    `namespace` is the schema ("" stands for pg_catalog on the wire and is
    decoded as "pg_catalog").
    """

    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[RelationColumn, ...]

    @property
    def table(self) -> str:
        return f"{self.namespace}.{self.name}"


@record
class TypeMessage:
    oid: int
    namespace: str
    name: str


@record
class Insert:
    relation_oid: int
    new: TupleData


@record
class Update:
    """`old` is None unless the identity changed (key-only) or it is FULL (whole row)."""

    relation_oid: int
    old: TupleData | None
    old_key_only: bool
    new: TupleData


@record
class Delete:
    relation_oid: int
    old: TupleData
    old_key_only: bool


@record
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@record
class LogicalMessage:
    """A `pg_logical_emit_message` record (needs the `messages` option)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeMessage
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
)

_UNSUPPORTED = {
    ord("S"): "Stream Start (start the slot with streaming off)",
    ord("E"): "Stream Stop (start the slot with streaming off)",
    ord("c"): "Stream Commit (start the slot with streaming off)",
    ord("A"): "Stream Abort (start the slot with streaming off)",
    ord("b"): "Begin Prepare (two-phase decoding is not supported)",
    ord("P"): "Prepare (two-phase decoding is not supported)",
    ord("K"): "Commit Prepared (two-phase decoding is not supported)",
    ord("r"): "Rollback Prepared (two-phase decoding is not supported)",
    ord("p"): "Stream Prepare (two-phase decoding is not supported)",
}


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode one pgoutput message; CaptureError for an unknown or malformed one."""
    buffer = bytes(data)
    if not buffer:
        raise CaptureError("empty pgoutput message")
    decoder = _DECODERS.get(buffer[0])
    if decoder is None:
        reason = _UNSUPPORTED.get(buffer[0], "unknown message type")
        raise CaptureError(f"pgoutput message {chr(buffer[0])!r}: {reason}")
    try:
        return decoder(buffer)
    except (struct.error, IndexError, ValueError) as exc:
        raise CaptureError(
            f"malformed pgoutput {chr(buffer[0])!r} message ({exc}): {buffer[:64]!r}"
        ) from None


def _string(buffer: bytes, offset: int) -> tuple[str, int]:
    end = buffer.index(0, offset)
    return buffer[offset:end].decode(), end + 1


def _begin(buffer: bytes) -> Begin:
    lsn, micros, xid = _BEGIN.unpack_from(buffer, 1)
    return Begin(final_lsn=lsn, commit_time=pg_timestamp(micros), xid=xid)


def _commit(buffer: bytes) -> Commit:
    flags, commit_lsn, end_lsn, micros = _COMMIT.unpack_from(buffer, 1)
    return Commit(flags, commit_lsn, end_lsn, pg_timestamp(micros))


def _origin(buffer: bytes) -> Origin:
    (lsn,) = _ORIGIN.unpack_from(buffer, 1)
    name, _ = _string(buffer, 9)
    return Origin(lsn, name)


def _relation(buffer: bytes) -> Relation:
    (oid,) = _HEADER.unpack_from(buffer, 1)
    namespace, offset = _string(buffer, 5)
    name, offset = _string(buffer, offset)
    identity = chr(buffer[offset])
    (count,) = _INT16.unpack_from(buffer, offset + 1)
    offset += 3
    columns = []
    for _ in range(count):
        flags = buffer[offset]
        column, offset = _string(buffer, offset + 1)
        type_oid, modifier = _COLUMN_TAIL.unpack_from(buffer, offset)
        offset += 8
        columns.append(RelationColumn(flags, column, type_oid, modifier))
    return Relation(oid, namespace or "pg_catalog", name, identity, tuple(columns))


def _type(buffer: bytes) -> TypeMessage:
    (oid,) = _HEADER.unpack_from(buffer, 1)
    namespace, offset = _string(buffer, 5)
    name, _ = _string(buffer, offset)
    return TypeMessage(oid, namespace or "pg_catalog", name)


def _tuple(buffer: bytes, offset: int) -> tuple[TupleData, int]:
    (count,) = _INT16.unpack_from(buffer, offset)
    offset += 2
    kinds = bytearray(count)
    values: list[bytes | None] = [None] * count
    for i in range(count):
        kind = buffer[offset]
        kinds[i] = kind
        if kind in (TEXT, BINARY):
            (length,) = _INT32.unpack_from(buffer, offset + 1)
            offset += 5
            values[i] = buffer[offset : offset + length]
            offset += length
        elif kind in (NULL, UNCHANGED_TOAST):
            offset += 1
        else:
            raise ValueError(f"unknown tuple column kind {chr(kind)!r}")
    if offset > len(buffer):
        raise ValueError("tuple data runs past the end of the message")
    return TupleData(bytes(kinds), tuple(values)), offset


def _insert(buffer: bytes) -> Insert:
    (oid,) = _HEADER.unpack_from(buffer, 1)
    if buffer[5] != ord("N"):
        raise ValueError(f"expected 'N' tuple, got {chr(buffer[5])!r}")
    new, _ = _tuple(buffer, 6)
    return Insert(oid, new)


def _update(buffer: bytes) -> Update:
    (oid,) = _HEADER.unpack_from(buffer, 1)
    marker = buffer[5]
    old: TupleData | None = None
    offset = 6
    if marker in (ord("K"), ord("O")):
        old, offset = _tuple(buffer, 6)
        offset += 1
        if buffer[offset - 1] != ord("N"):
            raise ValueError(f"expected 'N' tuple, got {chr(buffer[offset - 1])!r}")
    elif marker != ord("N"):
        raise ValueError(f"expected 'K', 'O' or 'N' tuple, got {chr(marker)!r}")
    new, _ = _tuple(buffer, offset)
    return Update(oid, old, marker == ord("K"), new)


def _delete(buffer: bytes) -> Delete:
    (oid,) = _HEADER.unpack_from(buffer, 1)
    marker = buffer[5]
    if marker not in (ord("K"), ord("O")):
        raise ValueError(f"expected 'K' or 'O' tuple, got {chr(marker)!r}")
    old, _ = _tuple(buffer, 6)
    return Delete(oid, old, marker == ord("K"))


def _truncate(buffer: bytes) -> Truncate:
    count, options = _TRUNCATE.unpack_from(buffer, 1)
    oids = struct.unpack_from(f">{count}I", buffer, 6)
    return Truncate(
        relation_oids=tuple(oids),
        cascade=bool(options & TRUNCATE_CASCADE),
        restart_identity=bool(options & TRUNCATE_RESTART_IDENTITY),
    )


def _logical_message(buffer: bytes) -> LogicalMessage:
    flags, lsn = _LOGICAL.unpack_from(buffer, 1)
    prefix, offset = _string(buffer, 10)
    (length,) = _UINT32.unpack_from(buffer, offset)
    content = buffer[offset + 4 : offset + 4 + length]
    if len(content) != length:
        raise ValueError(f"content shorter than its length {length}")
    return LogicalMessage(bool(flags & 1), lsn, prefix, content)


_DECODERS: dict[int, Callable[[bytes], Message]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _logical_message,
}
