"""Decoded pgoutput -> typed Changes, against real bytes from Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from pgsift.middleware.capture.changes import BUILTIN_TYPES, RelationCache, SchemaUpdate
from pgsift.middleware.capture.pgoutput import (
    UNCHANGED_TOAST,
    Delete,
    Insert,
    Relation,
    RelationColumn,
    Truncate,
    TupleData,
    Update,
    decode,
)
from pgsift.middleware.errors import CaptureError
from pgsift.subscriptions.change import Change
from tests.middleware.capture.sql_slot import SqlSlot

TYPE_SQL = """
SELECT t.typname, e.typname FROM pg_type t
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE t.oid = %s
"""
PRIMARY_KEY_SQL = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary
ORDER BY array_position(i.indkey, a.attnum)
"""


class Capture:
    """A pgoutput slot read over SQL and fed through a RelationCache."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.resolved: list[int] = []
        self.slot = SqlSlot(conn)
        self.cache = RelationCache(self.type_name, self.primary_key)
        self.updates: list[SchemaUpdate] = []
        self.messages: list[Any] = []

    def type_name(self, oid: int) -> str:
        self.resolved.append(oid)
        row = self.conn.execute(TYPE_SQL, [oid]).fetchone()
        assert row is not None
        return f"{row[1]}[]" if row[1] else str(row[0])

    def primary_key(self, table: str) -> list[str]:
        return [r[0] for r in self.conn.execute(PRIMARY_KEY_SQL, [table]).fetchall()]

    def changes(self) -> list[Change]:
        """Every change since the last call; Relation messages update the cache."""
        out: list[Change] = []
        for data in self.slot.read():
            message = decode(data)
            self.messages.append(message)
            if isinstance(message, Relation):
                self.updates.append(self.cache.update(message))
            elif isinstance(message, Insert | Update | Delete | Truncate):
                out.extend(self.cache.to_changes(message))
        return out


@pytest.fixture
def capture(database_url: str) -> Iterator[Capture]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE PUBLICATION p FOR ALL TABLES")
        yield Capture(conn)


# (column, SQL type, SQL value) - psycopg 3 reading the same row is the oracle.
COLUMNS: list[tuple[str, str, str]] = [
    ("i2", "int2", "-32768"),
    ("i4", "int4", "2147483647"),
    ("num", "numeric", "123456789012345678901234567890.000000001"),
    ("num_nan", "numeric", "'NaN'"),
    ("f4", "float4", "1.1"),
    ("f8", "float8", "'-Infinity'"),
    ("flag", "bool", "true"),
    ("t", "text", "E'multi\\nline \"quoted\" \\\\ back'"),
    ("vc", "varchar(10)", "'abc'"),
    ("bp", "char(4)", "'ab'"),
    ("u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("d", "date", "'2024-02-29'"),
    ("tm", "time", "'23:59:59.999999'"),
    ("tmtz", "timetz", "'01:02:03-07'"),
    ("ts", "timestamp", "'2024-01-02 03:04:05.123456'"),
    ("tstz", "timestamptz", "'2024-01-02 03:04:05.5+05:30'"),
    ("iv", "interval", "'1 year 2 mons -3 days 04:05:06.7'"),
    ("j", "json", '\'{"b": [1, 2.5], "a": null}\''),
    ("jb", "jsonb", '\'{"k": {"n": true}}\''),
    ("by", "bytea", "'\\x00ff5c'"),
    ("m", "mood", "'so so'"),
    ("i4a", "int4[]", "'{{1,NULL},{3,4}}'"),
    ("ta", "text[]", "ARRAY['NULL', NULL, '', 'a,b', 'q\"\\', '{x}']"),
    ("ma", "mood[]", "ARRAY['ok', 'so so', NULL]::mood[]"),
    ("tsa", "timestamptz[]", "ARRAY['2024-01-01 00:00+02'::timestamptz]"),
    ("ba", "bytea[]", "ARRAY['\\x01'::bytea, NULL]"),
    ("jba", "jsonb[]", 'ARRAY[\'{"a": "}"}\'::jsonb]'),
    ("na", "numeric[]", "'{1.5,NaN,-Infinity}'"),
    ("fa", "float8[]", "'{0.1,NaN,Infinity}'"),
    ("da", "date[]", "'{2024-01-01,NULL}'"),
    ("ua", "uuid[]", "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]"),
    ("iva", "interval[]", "ARRAY['-1 days +02:00'::interval]"),
    ("bpa", "char(2)[]", "ARRAY['a']::char(2)[]"),
]


def same(left: Any, right: Any) -> bool:
    """Equality with NaN == NaN, checking types (and nested lists)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, float | Decimal) and left != left:
        return bool(right != right)
    return bool(left == right)


def test_every_value_type_matches_psycopg(capture: Capture) -> None:
    conn = capture.conn
    conn.execute("CREATE TYPE mood AS ENUM ('ok', 'so so')")
    definitions = ", ".join(f"{name} {sql_type}" for name, sql_type, _ in COLUMNS)
    conn.execute(f"CREATE TABLE every (id int8 PRIMARY KEY, {definitions})")
    conn.execute("ALTER TABLE every REPLICA IDENTITY FULL")
    values = ", ".join(value for _, _, value in COLUMNS)
    conn.execute(f"INSERT INTO every VALUES (1, {values})")
    conn.execute("INSERT INTO every (id) VALUES (2)")
    conn.execute("UPDATE every SET i4 = 5 WHERE id = 1")
    conn.execute("DELETE FROM every WHERE id = 2")

    # psycopg 3 returns an unregistered enum array as a string: compare as text[].
    selected = ", ".join(f"{n}::text[]" if n == "ma" else n for n, _, _ in COLUMNS)
    cursor = conn.execute(f"SELECT id, {selected} FROM every WHERE id = 1")
    assert cursor.description is not None
    expected = dict(zip([c.name for c in cursor.description], cursor.fetchone() or (), strict=True))

    insert, null_insert, update, delete = capture.changes()
    assert insert.table == "public.every" and insert.op == "insert" and insert.key == {"id": 1}
    assert insert.new is not None
    assert insert.old is None
    assert insert.new["i4"] == 2147483647
    for column, value in insert.new.items():
        if column != "i4":
            assert same(value, expected[column]), (column, value, expected[column])
    assert null_insert.new == {"id": 2, **{name: None for name, _, _ in COLUMNS}}
    assert update.op == "update" and update.key == {"id": 1}
    assert update.old is not None and update.new is not None
    assert update.old["i4"] == 2147483647 and update.new["i4"] == 5
    assert same(update.old["ma"], ["ok", "so so", None])
    assert delete == Change("public.every", "delete", {"id": 2}, None, null_insert.new)
    enum_oids = {o for o in capture.resolved}
    assert len(enum_oids) == 2  # mood and mood[] only; builtins never hit the catalog
    assert capture.cache.get(insert_oid(capture)).has_primary_key


def insert_oid(capture: Capture) -> int:
    return next(m.relation_oid for m in capture.messages if isinstance(m, Insert))


def test_infinity_dates_and_timestamps(capture: Capture) -> None:
    capture.conn.execute("CREATE TABLE inf (d date, ts timestamp, tstz timestamptz)")
    capture.conn.execute("INSERT INTO inf VALUES ('infinity', '-infinity', 'infinity')")
    (change,) = capture.changes()
    assert change.new == {
        "d": date.max,
        "ts": datetime.min,
        "tstz": datetime.max.replace(tzinfo=UTC),
    }
    assert change.key == change.new  # no primary key: every column


def test_unchanged_toast_is_filled_from_the_old_row(capture: Capture) -> None:
    conn = capture.conn
    big = "".join(chr(0x41 + i % 26) for i in range(20_000))
    for table, identity in [("full_doc", "FULL"), ("plain_doc", "DEFAULT")]:
        conn.execute(f"CREATE TABLE {table} (id int4 PRIMARY KEY, body text, n int4)")
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN body SET STORAGE EXTERNAL")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY {identity}")
        conn.execute(f"INSERT INTO {table} VALUES (1, %s, 1)", [big])
    conn.execute("UPDATE full_doc SET n = 2")
    *_, update = capture.changes()
    raw = [m for m in capture.messages if isinstance(m, Update)][-1]
    assert raw.new.kinds[1] == UNCHANGED_TOAST  # really stored out of line, and unchanged
    assert update.new == {"id": 1, "body": big, "n": 2}
    assert update.old == {"id": 1, "body": big, "n": 1}

    conn.execute("UPDATE plain_doc SET n = 2")
    with pytest.raises(CaptureError, match=r"plain_doc\.body: unchanged TOAST.*IDENTITY FULL"):
        capture.changes()


def test_schema_changes_between_transactions(capture: Capture) -> None:
    conn = capture.conn
    conn.execute("CREATE TABLE t (id int4 PRIMARY KEY, a text)")
    conn.execute("INSERT INTO t VALUES (1, 'x')")
    conn.execute("ALTER TABLE t ADD COLUMN b int4 DEFAULT 5")
    conn.execute("INSERT INTO t VALUES (2, 'y')")
    conn.execute("ALTER TABLE t DROP COLUMN a")
    conn.execute("INSERT INTO t VALUES (3, 6)")
    conn.execute("UPDATE t SET b = 7 WHERE id = 1")
    conn.execute("ALTER TABLE t ALTER COLUMN b TYPE int8")
    conn.execute("INSERT INTO t VALUES (4, 8)")
    conn.execute("TRUNCATE t")
    changes = capture.changes()
    assert [c.new for c in changes] == [
        {"id": 1, "a": "x"},
        {"id": 2, "a": "y", "b": 5},
        {"id": 3, "b": 6},
        {"id": 1, "b": 7},
        {"id": 4, "b": 8},
        None,
    ]
    assert changes[-1] == Change("public.t", "truncate", None, None, None)
    # First sight, ADD, DROP, type change, then re-described after TRUNCATE unchanged.
    assert [u.changed for u in capture.updates] == [False, True, True, True, False]
    assert [c.type_name for c in capture.updates[3].schema.columns] == ["int4", "int8"]
    assert capture.updates[0].previous is None


def test_primary_key_change_and_replica_identity(capture: Capture) -> None:
    conn = capture.conn
    conn.execute("CREATE TABLE full_t (id int4 PRIMARY KEY, v text)")
    conn.execute("ALTER TABLE full_t REPLICA IDENTITY FULL")
    conn.execute("CREATE TABLE default_t (id int4 PRIMARY KEY, v text)")
    for table in ["full_t", "default_t"]:
        conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
        conn.execute(f"UPDATE {table} SET id = 2 WHERE id = 1")
        conn.execute(f"UPDATE {table} SET v = 'b'")
        conn.execute(f"DELETE FROM {table}")
    changes = capture.changes()
    full_t = [c for c in changes if c.table == "public.full_t"]
    default_t = [c for c in changes if c.table == "public.default_t"]
    assert full_t[1:] == [
        Change("public.full_t", "update", {"id": 2}, {"id": 2, "v": "a"}, {"id": 1, "v": "a"}),
        Change("public.full_t", "update", {"id": 2}, {"id": 2, "v": "b"}, {"id": 2, "v": "a"}),
        Change("public.full_t", "delete", {"id": 2}, None, {"id": 2, "v": "b"}),
    ]
    # Default identity: the old key when it changed, nothing otherwise.
    assert default_t[1:] == [
        Change("public.default_t", "update", {"id": 2}, {"id": 2, "v": "a"}, {"id": 1}),
        Change("public.default_t", "update", {"id": 2}, {"id": 2, "v": "b"}, None),
        Change("public.default_t", "delete", {"id": 2}, None, {"id": 2}),
    ]


def test_table_without_primary_key_uses_every_column(capture: Capture) -> None:
    conn = capture.conn
    conn.execute("CREATE TABLE log (at int4, msg text)")
    conn.execute("ALTER TABLE log REPLICA IDENTITY FULL")
    conn.execute("INSERT INTO log VALUES (1, 'a')")
    conn.execute("UPDATE log SET msg = 'b'")
    conn.execute("DELETE FROM log")
    insert, update, delete = capture.changes()
    assert insert.key == {"at": 1, "msg": "a"}
    assert update == Change(
        "public.log", "update", {"at": 1, "msg": "b"}, {"at": 1, "msg": "b"}, {"at": 1, "msg": "a"}
    )
    assert delete.key == {"at": 1, "msg": "b"}
    schema = capture.cache.get(insert_oid(capture))
    assert not schema.has_primary_key and schema.key == ("at", "msg")


def test_truncate_of_several_tables(capture: Capture) -> None:
    conn = capture.conn
    conn.execute("CREATE TABLE a (id int4 PRIMARY KEY)")
    conn.execute("CREATE TABLE b (id int4 PRIMARY KEY, a_id int4 REFERENCES a)")
    conn.execute("TRUNCATE a CASCADE")
    assert capture.changes() == [
        Change("public.a", "truncate", None, None, None),
        Change("public.b", "truncate", None, None, None),
    ]


def test_builtin_type_oids_match_the_catalog(capture: Capture) -> None:
    for oid, name in BUILTIN_TYPES.items():
        assert capture.type_name(oid) == name, oid


RELATION = Relation(
    7, "public", "t", "f", (RelationColumn(1, "id", 23, -1), RelationColumn(0, "v", 25, -1))
)


def pure_cache() -> RelationCache:
    cache = RelationCache(lambda oid: f"unknown_{oid}", lambda table: ["id"])
    cache.update(RELATION)
    return cache


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Insert(8, TupleData(b"tt", (b"1", b"x"))), "relation OID 8 before its Relation"),
        (Insert(7, TupleData(b"t", (b"1",))), "row has 1 columns, its Relation message 2"),
        (Insert(7, TupleData(b"tb", (b"1", b"\x00"))), "public.t.v: binary"),
        (Insert(7, TupleData(b"tt", (b"x", b"x"))), r"public.t.id: cannot decode b'x'"),
        (Insert(7, TupleData(b"tu", (b"1", None))), "public.t.v: unchanged TOASTed"),
        (Update(7, None, False, TupleData(b"tu", (b"1", None))), "REPLICA IDENTITY FULL"),
        (
            Update(7, TupleData(b"tu", (b"1", None)), False, TupleData(b"tu", (b"1", None))),
            "public.t.v: unchanged TOASTed",
        ),
        (Truncate((7, 9), False, False), "relation OID 9"),
    ],
)
def test_bad_messages_raise_capture_errors(
    message: Insert | Update | Delete | Truncate, error: str
) -> None:
    with pytest.raises(CaptureError, match=error):
        pure_cache().to_changes(message)


def test_stale_primary_key_falls_back_to_every_column() -> None:
    cache = RelationCache(lambda oid: "x", lambda table: ["gone"])
    update = cache.update(RELATION)
    assert update.schema.key == ("id", "v") and not update.schema.has_primary_key
    assert not update.changed
    assert len(update.schema.fingerprint) == 16
