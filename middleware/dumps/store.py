"""Where dumps live: the `DumpStore` seam and the value describing one complete dump.

A store makes a dump visible only once it is complete (`DumpWriter.publish`):
a build that fails or is killed midway leaves nothing a reader can find, only
leftovers that `sweep_abandoned` removes. Two implementations:
`RedisDumpStore` (chunks in a Redis hash; for small and medium dumps, no
shared disk needed) and `FileDumpStore` (a directory shared by workers and
gateways; for large dumps).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from pgsift.middleware.dumps.format import DumpHeader, DumpTrailer


@dataclass(frozen=True, slots=True)
class DumpInfo:
    """A complete, published dump."""

    dump_id: str
    header: DumpHeader
    trailer: DumpTrailer

    @property
    def age_s(self) -> float:
        return time.time() - self.header.built_at


class DumpWriter(Protocol):
    """One dump being written; invisible until `publish`."""

    dump_id: str

    def write(self, chunk: bytes) -> None: ...

    def keep_alive(self) -> None:
        """The build is alive, only slow to produce a chunk: keep what it wrote."""

    def publish(self, trailer: DumpTrailer) -> DumpInfo: ...

    def abort(self) -> None: ...


class DumpStore(Protocol):
    """Complete dumps by shape key, newest first."""

    def begin(self, header: DumpHeader) -> DumpWriter: ...

    def dumps(self, shape_key: str) -> list[DumpInfo]: ...

    def all_dumps(self) -> list[DumpInfo]: ...

    def shape_keys(self) -> set[str]:
        """The shapes that may have dumps, in one cheap read: every shape with a dump is
        there (a shape whose dumps went may be too)."""
        ...

    def body(self, info: DumpInfo) -> Iterator[bytes]: ...

    def delete(self, info: DumpInfo) -> None: ...

    def sweep_abandoned(self, older_than_s: float) -> int: ...


def new_dump_id(now: float | None = None) -> str:
    """Sortable by time, unique across concurrent builders."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:013d}-{secrets.token_hex(4)}"

