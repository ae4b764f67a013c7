"""Encoders built once give json.dumps's text (pure)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pgsift.middleware.gateway.client import key_of
from pgsift.middleware.gateway.sync_plan import encode

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
keys = st.dictionaries(st.text(), values, max_size=4)


@given(keys)
def test_key_of_is_json_dumps_with_sorted_keys(key: dict[str, Any]) -> None:
    assert key_of(key) == json.dumps(key, sort_keys=True)


@given(values)
def test_encode_is_compact_json_dumps(value: Any) -> None:
    assert encode(value) == json.dumps(value, separators=(",", ":"))


def test_equal_keys_give_one_string_whatever_the_column_order() -> None:
    assert key_of({"b": 1, "a": "x"}) == key_of({"a": "x", "b": 1}) == '{"a": "x", "b": 1}'
