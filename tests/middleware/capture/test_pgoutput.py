"""pgoutput decoding: hand-built bytes for every message, then real bytes from Postgres."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgsift.middleware.capture.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    TupleData,
    TypeMessage,
    Update,
    decode,
)
from pgsift.middleware.errors import CaptureError
from tests.middleware.capture.sql_slot import SqlSlot

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def tuple_data(*columns: bytes | str | None) -> bytes:
    """Wire TupleData: bytes -> 't', None -> 'n', "u" -> unchanged TOAST, "b:<x>" -> binary."""
    out = struct.pack(">h", len(columns))
    for column in columns:
        if column is None:
            out += b"n"
        elif column == "u":
            out += b"u"
        elif isinstance(column, str):
            data = column.removeprefix("b:").encode()
            out += b"b" + struct.pack(">i", len(data)) + data
        else:
            out += b"t" + struct.pack(">i", len(column)) + column
    return out


ROW = TupleData(b"tn", (b"1", None))
OLD_ROW = TupleData(b"tt", (b"1", b"old"))
KEY_ROW = TupleData(b"tn", (b"1", None))

CASES: list[tuple[str, bytes, Message]] = [
    (
        "begin",
        b"B" + struct.pack(">QqI", 0x16B3748, 1_000_000, 1234),
        Begin(0x16B3748, EPOCH + timedelta(seconds=1), 1234),
    ),
    (
        "commit-before-epoch",
        b"C" + struct.pack(">BQQq", 0, 0x100000001, 0x100000002, -1),
        Commit(0, 0x100000001, 0x100000002, EPOCH - timedelta(microseconds=1)),
    ),
    ("origin", b"O" + struct.pack(">Q", 77) + b"node_a\0", Origin(77, "node_a")),
    (
        "relation",
        b"R"
        + struct.pack(">I", 16384)
        + b"public\0issues\0f"
        + struct.pack(">h", 2)
        + b"\x01id\0"
        + struct.pack(">Ii", 20, -1)
        + b"\x00title\0"
        + struct.pack(">Ii", 1043, 104),
        Relation(
            16384,
            "public",
            "issues",
            "f",
            (RelationColumn(1, "id", 20, -1), RelationColumn(0, "title", 1043, 104)),
        ),
    ),
    (
        "relation-catalog-no-columns",
        b"R" + struct.pack(">I", 1) + b"\0t\0d" + struct.pack(">h", 0),
        Relation(1, "pg_catalog", "t", "d", ()),
    ),
    (
        "type",
        b"Y" + struct.pack(">I", 16390) + b"public\0mood\0",
        TypeMessage(16390, "public", "mood"),
    ),
    (
        "insert",
        b"I" + struct.pack(">I", 16384) + b"N" + tuple_data(b"1", None, "u", "b:\x01", b""),
        Insert(16384, TupleData(b"tnubt", (b"1", None, None, b"\x01", b""))),
    ),
    (
        "update-new-only",
        b"U" + struct.pack(">I", 5) + b"N" + tuple_data(b"1", None),
        Update(5, None, False, ROW),
    ),
    (
        "update-key",
        b"U" + struct.pack(">I", 5) + b"K" + tuple_data(b"1", None) + b"N" + tuple_data(b"1", None),
        Update(5, KEY_ROW, True, ROW),
    ),
    (
        "update-old",
        b"U"
        + struct.pack(">I", 5)
        + b"O"
        + tuple_data(b"1", b"old")
        + b"N"
        + tuple_data(b"1", None),
        Update(5, OLD_ROW, False, ROW),
    ),
    (
        "delete-key",
        b"D" + struct.pack(">I", 5) + b"K" + tuple_data(b"1", None),
        Delete(5, KEY_ROW, True),
    ),
    (
        "delete-old",
        b"D" + struct.pack(">I", 5) + b"O" + tuple_data(b"1", b"old"),
        Delete(5, OLD_ROW, False),
    ),
    (
        "truncate",
        b"T" + struct.pack(">IBII", 2, 3, 16384, 16390),
        Truncate((16384, 16390), cascade=True, restart_identity=True),
    ),
    (
        "truncate-plain",
        b"T" + struct.pack(">IBI", 1, 0, 7),
        Truncate((7,), cascade=False, restart_identity=False),
    ),
    (
        "message",
        b"M" + struct.pack(">BQ", 1, 99) + b"pgsift\0" + struct.pack(">I", 3) + b"a\0c",
        LogicalMessage(True, 99, "pgsift", b"a\0c"),
    ),
    (
        "message-non-transactional-empty",
        b"M" + struct.pack(">BQ", 0, 1) + b"\0" + struct.pack(">I", 0),
        LogicalMessage(False, 1, "", b""),
    ),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode(data: bytes, expected: Message) -> None:
    assert decode(data) == expected
    assert decode(memoryview(data)) == expected


BAD: list[tuple[bytes, str]] = [
    (b"", "empty"),
    (b"Z\0\0", "'Z': unknown message type"),
    (b"S" + struct.pack(">IB", 1, 1), "streaming off"),
    (b"b", "two-phase"),
    (b"B\0\0\0", "malformed pgoutput 'B'"),
    (b"I" + struct.pack(">I", 1) + b"X" + tuple_data(b"1"), "expected 'N'"),
    (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"x", "kind 'x'"),
    (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t\0\0\0\x09ab", "past the end"),
    (b"U" + struct.pack(">I", 1) + b"Q" + tuple_data(b"1"), "expected 'K', 'O' or 'N'"),
    (b"U" + struct.pack(">I", 1) + b"O" + tuple_data(b"1") + b"X", "expected 'N'"),
    (b"D" + struct.pack(">I", 1) + b"N" + tuple_data(b"1"), "expected 'K' or 'O'"),
    (b"R" + struct.pack(">I", 1) + b"public", "malformed"),
    (b"M" + struct.pack(">BQ", 1, 1) + b"p\0" + struct.pack(">I", 5) + b"ab", "shorter"),
]


@pytest.mark.parametrize(("data", "error"), BAD)
def test_decode_rejects(data: bytes, error: str) -> None:
    with pytest.raises(CaptureError, match=error):
        decode(data)


@pytest.mark.parametrize("proto_version", [1, 2])
def test_real_messages_from_postgres(database_url: str, proto_version: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE TYPE mood AS ENUM ('ok', 'meh')")
        conn.execute("CREATE TABLE issues (id int8 PRIMARY KEY, title text, m mood)")
        conn.execute("CREATE TABLE other (id int4 PRIMARY KEY)")
        conn.execute("ALTER TABLE other REPLICA IDENTITY FULL")
        conn.execute("CREATE PUBLICATION p FOR TABLE issues, other")
        slot = SqlSlot(conn, proto_version=proto_version)
        with conn.transaction():
            conn.execute("INSERT INTO issues VALUES (1, 'a', 'ok'), (2, NULL, NULL)")
            conn.execute("SELECT pg_logical_emit_message(true, 'pgsift', 'hello')")
        conn.execute("UPDATE issues SET title = 'b' WHERE id = 1")
        conn.execute("UPDATE issues SET id = 3 WHERE id = 2")
        conn.execute("INSERT INTO other VALUES (10)")
        conn.execute("UPDATE other SET id = 11")
        conn.execute("DELETE FROM issues WHERE id = 3")
        conn.execute("DELETE FROM other")
        conn.execute("SELECT pg_logical_emit_message(false, 'side', '\\x00ff'::bytea)")
        conn.execute("TRUNCATE issues, other RESTART IDENTITY")
        oids: dict[str, int] = dict(
            conn.execute(
                "SELECT relname, oid FROM pg_class WHERE relname IN ('issues', 'other')"
            ).fetchall()
        )
        mood = conn.execute("SELECT oid FROM pg_type WHERE typname = 'mood'").fetchone()
        assert mood is not None
        messages = [decode(data) for data in slot.read()]

    issues, other = int(oids["issues"]), int(oids["other"])
    kinds = [type(m).__name__ for m in messages]
    assert kinds == [
        "Begin", "TypeMessage", "Relation", "Insert", "Insert", "LogicalMessage", "Commit",
        "Begin", "Update", "Commit",
        "Begin", "Update", "Commit",
        "Begin", "Relation", "Insert", "Commit",
        "Begin", "Update", "Commit",
        "Begin", "Delete", "Commit",
        "Begin", "Delete", "Commit",
        "LogicalMessage",
        # TRUNCATE gives the tables new files, so pgoutput describes them again.
        "Begin", "TypeMessage", "Relation", "Relation", "Truncate", "Commit",
    ]  # fmt: skip
    begin, commit = messages[0], messages[6]
    assert isinstance(begin, Begin) and isinstance(commit, Commit)
    assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
    assert begin.commit_time == commit.commit_time
    assert abs(datetime.now(UTC) - commit.commit_time) < timedelta(hours=1)
    assert messages[1] == TypeMessage(int(mood[0]), "public", "mood")
    assert messages[2] == Relation(
        issues,
        "public",
        "issues",
        "d",
        (
            RelationColumn(1, "id", 20, -1),
            RelationColumn(0, "title", 25, -1),
            RelationColumn(0, "m", int(mood[0]), -1),
        ),
    )
    assert messages[3] == Insert(issues, TupleData(b"ttt", (b"1", b"a", b"ok")))
    assert messages[4] == Insert(issues, TupleData(b"tnn", (b"2", None, None)))
    hello = messages[5]
    assert isinstance(hello, LogicalMessage)
    assert hello == LogicalMessage(True, hello.lsn, "pgsift", b"hello")
    assert 0 < hello.lsn <= begin.final_lsn
    assert messages[8] == Update(issues, None, False, TupleData(b"ttt", (b"1", b"b", b"ok")))
    # Default identity, key changed: the old key only.
    assert messages[11] == Update(
        issues, TupleData(b"tnn", (b"2", None, None)), True, TupleData(b"tnn", (b"3", None, None))
    )
    assert isinstance(messages[14], Relation) and messages[14].replica_identity == "f"
    assert messages[18] == Update(
        other, TupleData(b"t", (b"10",)), False, TupleData(b"t", (b"11",))
    )
    assert messages[21] == Delete(issues, TupleData(b"tnn", (b"3", None, None)), True)
    assert messages[24] == Delete(other, TupleData(b"t", (b"11",)), False)
    side = messages[26]
    assert isinstance(side, LogicalMessage)
    assert (side.transactional, side.prefix, side.content) == (False, "side", b"\x00\xff")
    assert messages[31] == Truncate((issues, other), cascade=False, restart_identity=True)


def test_real_origin_message(database_url: str) -> None:
    origin = f"node_{uuid.uuid4().hex[:8]}"  # replication origins are cluster-wide
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int4 PRIMARY KEY)")
        conn.execute("CREATE PUBLICATION p FOR TABLE t")
        slot = SqlSlot(conn)
        conn.execute("SELECT pg_replication_origin_create(%s)", [origin])
        conn.execute("SELECT pg_replication_origin_session_setup(%s)", [origin])
        try:
            with conn.transaction():
                conn.execute("SELECT pg_replication_origin_xact_setup('1/1234', now())")
                conn.execute("INSERT INTO t VALUES (1)")
        finally:
            conn.execute("SELECT pg_replication_origin_session_reset()")
            conn.execute("SELECT pg_replication_origin_drop(%s)", [origin])
        messages = [decode(data) for data in slot.read()]
    assert [type(m).__name__ for m in messages] == [
        "Begin", "Origin", "Relation", "Insert", "Commit"
    ]  # fmt: skip
    assert messages[1] == Origin((1 << 32) | 0x1234, origin)
