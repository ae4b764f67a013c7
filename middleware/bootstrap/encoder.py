"""`RowEncoder`: rows as psycopg returns them -> the NDJSON row lines of a bootstrap.

Used for live bootstraps and dump builds alike (`LiveRows.lines`); values in
their wire form (`pgsift.subscriptions.wire`), by the shape's `RowWire`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pgsift.middleware.dumps.format import ROW_PREFIX, ROW_SUFFIX
from pgsift.subscriptions.wire import RowWire

_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RowEncoder:
    """psycopg row tuples -> concatenated wire lines `{"type":"row","row":{...}}\\n`."""

    def __init__(self, wire: RowWire) -> None:
        self.columns = wire.columns
        self._wire = wire

    def encode(self, rows: Sequence[Sequence[Any]]) -> bytes:
        to_wire, encode = self._wire.values, _json_encode
        lines = [encode(to_wire(row)) for row in rows]
        if not lines:
            return b""
        middle = (ROW_SUFFIX + ROW_PREFIX).decode()
        return ROW_PREFIX + middle.join(lines).encode() + ROW_SUFFIX
