"""Cutting changes into messages of bounded size."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pgsift.middleware.gateway.messages import batched, change_size, wire_change
from pgsift.subscriptions.wire import RowWire

WIRE = RowWire(("id", "at", "n", "t"), ("int8", "timestamptz", "numeric", "text"))


def test_wire_change_encodes_values_by_column_type() -> None:
    row = {"id": 2**60, "at": datetime(2024, 1, 2, tzinfo=UTC), "n": Decimal("1.5")}
    change = wire_change("INSERT", {"id": 2**60}, row, WIRE)
    assert change.key == {"id": "1152921504606846976"}
    assert change.row == {
        "id": "1152921504606846976", "at": "2024-01-02T00:00:00+00:00", "n": "1.5"
    }
    assert wire_change("DELETE", {"id": 1}, None, WIRE).row is None


def test_batches_are_bounded_and_only_the_last_carries_the_cursor() -> None:
    changes = [wire_change("INSERT", {"id": i}, {"id": i, "t": "x" * 50}, WIRE) for i in range(10)]
    limit = 3 * change_size(changes[0])
    messages = list(batched(changes, max_bytes=limit, cursor="5-0", up_to_date=True))
    assert [len(m.changes) for m in messages] == [3, 3, 3, 1]
    assert [m.cursor for m in messages] == [None, None, None, "5-0"]
    assert [c for m in messages for c in m.changes] == changes


def test_one_oversized_change_still_travels() -> None:
    big = wire_change("INSERT", {"id": 1}, {"id": 1, "t": "x" * 1000}, WIRE)
    messages = batched([big], max_bytes=10, cursor="1-0", up_to_date=True)
    assert [len(m.changes) for m in messages] == [1]


def test_an_empty_transaction_is_one_empty_message() -> None:
    assert [m.cursor for m in batched([], max_bytes=10, cursor="1-0", up_to_date=True)] == ["1-0"]
