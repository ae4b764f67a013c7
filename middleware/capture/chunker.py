"""Cutting committed transactions into feed entries (chunks) of bounded size.

(The gateway puts the chunks back together: `pgsift.middleware.gateway.reassembly`.)

Chunk boundaries depend only on the order of the changes and the chunk size,
so a transaction that Postgres re-sends after a crash is cut into the same
chunks with the same IDs, and the writer skips the ones already stored (after
checking they are the same: `pgsift.middleware.feed.writer`).
A full chunk is held back until the next change arrives: the final chunk of a
transaction is never empty and carries `last=True`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pgsift.middleware.errors import CaptureError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.change import Change


class SchemaTracker:
    """Last-seen column fingerprints per table: a changed one is a schema change."""

    def __init__(self, seen: Mapping[str, str]) -> None:
        self.seen = dict(seen)
        self.unsaved: dict[str, str] = {}

    def observe(self, table: str, fingerprint: str) -> bool:
        """Record `fingerprint` for `table`; True when it differs from a previous one."""
        previous = self.seen.get(table)
        if previous == fingerprint:
            return False
        self.seen[table] = fingerprint
        self.unsaved[table] = fingerprint
        return previous is not None

    def take_unsaved(self) -> dict[str, str]:
        unsaved, self.unsaved = self.unsaved, {}
        return unsaved


class TransactionChunker:
    """Builds the chunks of one transaction at a time from its changes."""

    def __init__(self, max_changes: int) -> None:
        if max_changes < 1:
            raise CaptureError("capture_max_changes_per_entry must be at least 1")
        self.max_changes = max_changes
        self._open: tuple[int, int, datetime] | None = None  # lsn, xid, commit time
        self._changes: list[Change] = []
        self._schema_changes: list[str] = []
        self._upcoming: list[str] = []  # schema changes seen before their first change
        self._chunk = 0

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def begin(self, lsn: int, xid: int, commit_time: datetime) -> None:
        if self._open is not None:
            raise CaptureError(f"Begin of xid {xid} inside open transaction {self._open[1]}")
        self._open = (lsn, xid, commit_time)
        self._chunk = 0
        # The lists are copied into each chunk, so the common empty case reuses them.
        if self._changes or self._schema_changes or self._upcoming:
            self._changes, self._schema_changes, self._upcoming = [], [], []

    def schema_changed(self, table: str) -> None:
        """Flag `table` on the chunk that will hold its next change (the new shape)."""
        if table not in self._upcoming:
            self._upcoming.append(table)

    def add(self, change: Change) -> FeedEntry | None:
        """Add a change; returns a completed (non-final) chunk when one is ready to write."""
        ready: FeedEntry | None = None
        if len(self._changes) == self.max_changes:
            ready = self._cut(False)
        if self._upcoming:
            self._schema_changes += [t for t in self._upcoming if t not in self._schema_changes]
            self._upcoming = []
        self._changes.append(change)
        return ready

    def commit(self) -> FeedEntry | None:
        """End the transaction: its last chunk, or None when it had no tracked changes."""
        if self._open is None:
            raise CaptureError("Commit without Begin")
        # add() cuts a chunk only when another change follows, so once anything
        # was cut `_changes` is not empty here.
        if self._upcoming:
            self._schema_changes += [t for t in self._upcoming if t not in self._schema_changes]
        final = self._cut(True) if self._changes or self._schema_changes else None
        self._open = None
        return final

    def abort(self) -> None:
        """Forget the open transaction (the stream broke; Postgres will re-send it)."""
        self._open = None
        self._changes, self._schema_changes, self._upcoming, self._chunk = [], [], [], 0

    def _cut(self, last: bool) -> FeedEntry:
        if self._open is None:
            raise CaptureError("a change outside a transaction")
        lsn, xid, commit_time = self._open
        entry = FeedEntry(
            lsn, xid, commit_time, tuple(self._changes), self._chunk, last,
            tuple(self._schema_changes) if self._schema_changes else (),
        )
        self._chunk += 1
        self._changes.clear()
        if self._schema_changes:
            self._schema_changes = []
        return entry
