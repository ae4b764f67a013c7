"""`RowEncoder`: rows as psycopg returns them -> the NDJSON row lines of a bootstrap.

Used for live bootstraps and dump builds alike (`LiveRows.lines`); values in
their JSON form, as `values.to_json` makes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from datetime import time as time_of_day
from typing import Any

from pgsift.middleware.dumps.format import ROW_PREFIX, ROW_SUFFIX
from pgsift.subscriptions import values

# Types whose psycopg value already is its JSON form (see values.to_json).
_AS_IS = frozenset({"int2", "int4", "int8", "text", "varchar", "bpchar", "bool", "json", "jsonb"})
# Shortcuts equal to values.to_json for one type: it dispatches on the value's
# class, which costs more than the JSON encoding itself on wide rows.
_FAST: dict[str, Callable[[Any], Any]] = {
    "timestamptz": datetime.isoformat,
    "timestamp": datetime.isoformat,
    "date": date.isoformat,
    "time": time_of_day.isoformat,
    "numeric": str,
    "uuid": str,
}
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RowEncoder:
    """psycopg row tuples -> concatenated wire lines `{"type":"row","row":{...}}\\n`."""

    def __init__(self, columns: Sequence[str], types: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._convert = [_converter(t) for t in types]

    def encode(self, rows: Sequence[Sequence[Any]]) -> bytes:
        columns, convert = self.columns, self._convert
        lines = []
        for row in rows:
            document = {
                name: value if fn is None or value is None else fn(value)
                for name, fn, value in zip(columns, convert, row, strict=True)
            }
            lines.append(_json_encode(document))
        if not lines:
            return b""
        middle = (ROW_SUFFIX + ROW_PREFIX).decode()
        return ROW_PREFIX + middle.join(lines).encode() + ROW_SUFFIX


def _converter(type_name: str) -> Callable[[Any], Any] | None:
    """How a non-NULL value of the type becomes its JSON form; None: it already is."""
    element = type_name.removesuffix("[]")
    if element in _AS_IS or not values.is_known_type(element):
        return None  # also enums (str), and arrays of these: nested lists of the same
    fast = _FAST.get(type_name)
    return fast if fast is not None else values.to_json
