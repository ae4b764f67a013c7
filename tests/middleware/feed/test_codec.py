"""The feed codec keeps every value type exactly (type and value), small or big entries."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from pgsift.middleware.errors import FeedError
from pgsift.middleware.feed.codec import COMPRESSED_FIELD, PLAIN_FIELD, decode_entry, encode_entry
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.jsonvalues import JSON_NULL

VALUES: dict[str, Any] = {
    "int2": 7,
    "int8_min": -(2**63),
    "int8_max": 2**63 - 1,
    "numeric": Decimal("12345678901234567890.000000000001"),
    "numeric_nan": Decimal("NaN"),
    "numeric_neg_zero": Decimal("-0.00"),
    "float8": 0.1,
    "float8_inf": math.inf,
    "float4": -3.5,
    "bool": True,
    "text": "héllo\x00-less but ünïcode ✓",
    "empty": "",
    "uuid": UUID("6e7f3c7e-8f4a-4c45-9d1f-0b1a2c3d4e5f"),
    "date": date(2024, 2, 29),
    "date_max": date.max,
    "time": time(23, 59, 59, 999999),
    "timetz": time(12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    "timestamp": datetime(1999, 12, 31, 23, 59, 59, 123456),
    "timestamp_old": datetime(1, 1, 1),
    "timestamptz": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    "timestamptz_max": datetime.max.replace(tzinfo=UTC),
    "interval": timedelta(days=-3, hours=4, microseconds=5),
    "json": {"a": [1, 2.5, None, True, "x"], "b": {"c": {}}, "big": 2**70},
    "json_scalar": "just a string",
    "json_null": JSON_NULL,  # not SQL NULL
    "json_null_string": "null",
    "jsonb_array": [JSON_NULL, None, {"n": None}],
    "bytea": b"\x00\xffbinary",
    "empty_bytes": b"",
    "enum": "in_progress",
    "int4_array": [1, None, 3],
    "nested_array": [[1, 2], [3, 4]],
    "text_array": ["a", "", None],
    "ts_array": [datetime(2020, 1, 1, tzinfo=UTC), None],
    "null": None,
}


def entry(changes: tuple[Change, ...], **kw: Any) -> FeedEntry:
    return FeedEntry(
        lsn=0x16B3748, xid=1234, commit_time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        changes=changes, **kw,
    )


def roundtrip(value: FeedEntry) -> FeedEntry:
    fields = {k.encode(): v for k, v in encode_entry(value).items()}
    return decode_entry(value.id.encode(), fields)


def same_types(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (True == 1 must not pass)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal) and a.is_nan():
        return bool(b.is_nan())
    if isinstance(a, (datetime, time)):
        return bool(a == b and a.utcoffset() == b.utcoffset())
    return bool(a == b) and str(a) == str(b)


def test_every_value_type_survives() -> None:
    change = Change("public.t", "update", {"id": 1}, dict(VALUES), dict(VALUES))
    original = entry((change,), schema_changes=("public.t",))
    decoded = roundtrip(original)
    assert decoded.id == original.id and decoded.lsn == original.lsn
    assert decoded.xid == 1234 and decoded.last and decoded.schema_changes == ("public.t",)
    assert decoded.commit_time == original.commit_time
    assert decoded.commit_time.utcoffset() == timedelta(0)
    (got,) = decoded.changes
    assert got.table == "public.t" and got.op == "update" and got.key == {"id": 1}
    assert got.new is not None
    for name, value in VALUES.items():
        assert same_types(value, got.new[name]), name


def test_truncate_and_delete_shapes() -> None:
    changes = (
        Change("public.t", "delete", {"id": 1}, None, {"id": 1, "x": "a"}),
        Change("public.t", "truncate", None, None, None),
    )
    assert roundtrip(entry(changes)).changes == changes


def test_big_chunks_are_compressed_and_small_ones_not() -> None:
    rows = tuple(
        Change("public.t", "insert", {"id": i}, {"id": i, "title": f"row {i}"}, None)
        for i in range(1000)
    )
    big = encode_entry(entry(rows, chunk=3, last=False))
    assert set(big) == {COMPRESSED_FIELD.decode()}
    decoded = roundtrip(entry(rows, chunk=3, last=False))
    assert decoded.changes == rows and decoded.chunk == 3 and not decoded.last
    small = encode_entry(entry(rows[:1]))
    assert set(small) == {PLAIN_FIELD.decode()}
    assert len(small["m"]) < 80


def test_foreign_entries_are_refused_clearly() -> None:
    with pytest.raises(FeedError, match="no pgsift payload"):
        decode_entry("1-0", {b"other": b"x"})
    with pytest.raises(FeedError, match="not a valid pgsift entry"):
        decode_entry("1-0", {b"m": b"\xc1"})


def test_unsupported_python_values_are_refused() -> None:
    with pytest.raises(TypeError, match="set"):
        encode_entry(entry((Change("public.t", "insert", {"id": 1}, {"x": {1}}, None),)))
    # The encoder is reused: a refused entry leaves nothing behind in it.
    good = entry((Change("public.t", "insert", {"id": 2}, {"x": 2}, None),))
    fields = {k.encode(): v for k, v in encode_entry(good).items()}
    assert decode_entry(good.id, fields) == good
