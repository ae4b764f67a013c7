"""A move statement's rows as wire changes (`moves._changes`, pure)."""

from __future__ import annotations

from typing import Any

from pgsift.middleware.gateway.messages import WireChange
from pgsift.middleware.gateway.moves import _changes, key_id
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

CATALOG = Catalog.from_dict({
    "issues": {"columns": {"id": "int8", "title": "text"}, "primary_key": ["id"]},
    "pairs": {"columns": {"b": "int8", "a": "text", "v": "text"}, "primary_key": ["b", "a"]},
    "tagged": {"columns": {"tags": "int8[]", "v": "text"}, "primary_key": ["tags"]},
})
SNAP = "10:12:"


def shape(table: str) -> Shape:
    return Shape.parse(f"SELECT * FROM {table}", [], catalog=CATALOG)


def test_one_move_inserts_rows_in_the_shape_and_deletes_the_others() -> None:
    rows = [(SNAP, 0, 1, "a", True), (SNAP, 0, 2, "b", False)]
    out = _changes(shape("issues"), 1, rows)
    assert out == {
        (("id", "1"),): WireChange("INSERT", {"id": "1"}, {"id": "1", "title": "a"}),
        (("id", "2"),): WireChange("DELETE", {"id": "2"}, None),
    }


def test_no_region_row_is_no_change() -> None:
    assert _changes(shape("issues"), 1, [(SNAP, None, None, None, None)]) == {}
    assert _changes(shape("issues"), 2, [(SNAP, None, None, None, None)]) == {}


def test_a_later_move_wins_per_key_whatever_the_row_order() -> None:
    rows = [(SNAP, 1, 1, "later", False), (SNAP, 0, 1, "first", True), (SNAP, 0, 2, "x", True)]
    out = _changes(shape("issues"), 2, rows)
    assert list(out.values()) == [
        WireChange("DELETE", {"id": "1"}, None),
        WireChange("INSERT", {"id": "2"}, {"id": "2", "title": "x"}),
    ]


def test_keys_of_several_columns_and_of_arrays_are_their_key_ids() -> None:
    pairs = _changes(shape("pairs"), 1, [(SNAP, 0, 7, "k", "v", True)])
    key: dict[str, Any] = {"b": "7", "a": "k"}
    assert list(pairs) == [key_id(key)] == [(("a", "k"), ("b", "7"))]
    assert pairs[key_id(key)].key == key
    tagged = _changes(shape("tagged"), 1, [(SNAP, 0, [1, 2], "v", True)])
    assert list(tagged) == [key_id({"tags": ["1", "2"]})]
