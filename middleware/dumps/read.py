"""One complete dump, read: its cursor, its rows, its stored body, each checked.

Reading goes through `pgsift.middleware.dumps.format`, which checks the row
count and the checksum of the trailer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.bootstrap.cursor import BootstrapCursor
from pgsift.middleware.dumps.format import body_rows, checked_body, decompressed_body
from pgsift.middleware.dumps.store import DumpInfo, DumpStore


@dataclass(frozen=True, slots=True)
class DumpSnapshot:
    """A complete dump read as the snapshot of a shape."""

    store: DumpStore
    info: DumpInfo

    @property
    def cursor(self) -> BootstrapCursor:
        return self.info.header.cursor

    @property
    def count(self) -> int:
        return self.info.trailer.count

    def compressed(self) -> Iterator[bytes]:
        """The whole bootstrap response as stored: one zstd frame, checked."""
        return checked_body(self.store.body(self.info), self.info.trailer)

    def ndjson(self) -> Iterator[bytes]:
        """The whole bootstrap response (header, rows, end line) in blocks, checked."""
        return decompressed_body(self.store.body(self.info), self.info.trailer)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row with values in their wire form (`wire.RowWire`), as clients get them."""
        return body_rows(self.store.body(self.info), self.info.trailer)

