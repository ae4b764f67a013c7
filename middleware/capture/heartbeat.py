"""Capture's side of the heartbeat: knowing up to which moment the feed is complete.

Once a second capture writes a marker into the WAL through its side connection
(`pg_logical_emit_message`, non-transactional, prefix `MARKER_PREFIX`, the wall
clock as content). Every transaction that committed before the marker was
written is before it in the WAL, so it reaches capture before the marker does;
once the feed has stored every transaction received before the marker, the
feed is complete up to the marker's time. Then capture writes the heartbeat
(`pgsift.middleware.feed.heartbeat`) with that time as its lag, and may confirm
the slot up to the marker's position: on a database where nothing is captured
the slot still moves on, and WAL is not retained for nothing (what Debezium's
heartbeat action query is for).

The markers need the `messages` option of pgoutput (PostgreSQL 14+). On older
servers the moment is taken when capture has read everything the server sent and
stored it - weaker: a server still decoding a backlog can look caught up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pgsift.middleware.capture import pgoutput
from pgsift.middleware.capture.lookup import CatalogLookup
from pgsift.middleware.feed import heartbeat

MARKER_PREFIX = "pgsift.heartbeat"
MARKERS_SINCE = 140000  # server_version_num with pgoutput's `messages` option


@dataclass(frozen=True)
class Mark:
    """The feed is complete up to wall-clock `at` once entries up to `completed_lsn` are
    stored; `lsn` is the marker's own position (None: no marker, the fallback)."""

    at: float
    completed_lsn: int
    lsn: int | None


class CompletenessClock:
    """Emits markers, notices them coming back, says when a heartbeat may be written."""

    def __init__(self, lookup: CatalogLookup, *, server_version: int) -> None:
        self.markers = server_version >= MARKERS_SINCE
        self._lookup = lookup
        self._next_marker = 0.0
        self._mark: Mark | None = None

    def tick(self) -> None:
        """Write a marker into the WAL if one is due (call often; costs nothing otherwise)."""
        if not self.markers or time.monotonic() < self._next_marker:
            return
        self._next_marker = time.monotonic() + heartbeat.EVERY_S
        self._lookup.emit_message(MARKER_PREFIX, repr(time.time()))

    def received(self, message: pgoutput.LogicalMessage, completed_lsn: int) -> bool:
        """Whether `message` is a marker (then noted: received after `completed_lsn`)."""
        if message.prefix != MARKER_PREFIX or message.transactional:
            return False
        try:
            at = float(message.content.decode())
        except ValueError:
            return True  # someone else's message under our prefix: ignore it
        self._note(Mark(at, completed_lsn, message.lsn))
        return True

    def drained(self, completed_lsn: int) -> None:
        """Capture has read everything the server sent, up to `completed_lsn` (fallback)."""
        if not self.markers:
            self._note(Mark(time.time(), completed_lsn, None))

    def complete(self, acked_lsn: int) -> Mark | None:
        """The mark that entries stored up to `acked_lsn` complete, once (then forgotten)."""
        mark = self._mark
        if mark is None or acked_lsn < mark.completed_lsn:
            return None
        self._mark = None
        return mark

    def _note(self, mark: Mark) -> None:
        # The newest mark wins: it will be complete no earlier than an older one.
        if self._mark is None or mark.at >= self._mark.at:
            self._mark = mark
