"""Bootstrap cursors: a feed position plus the snapshot the rows were read in.

A bootstrap (dump or live) records the feed position *before* it takes its
`REPEATABLE READ` snapshot, so every transaction missing from the rows is in the
feed after that position. Some transactions after the position are already in
the rows, though: those that committed between reading the position and taking
the snapshot, and those capture had not yet appended. Replaying them is
harmless (applies are upserts/deletes by primary key, and replaying in commit
order ends in the same state) but briefly rolls rows back; carrying the
snapshot in the cursor lets the replaying side skip them.

Text form: `<stream id>@<xmin>:<xmax>:<xip,...>`, the snapshot part being exactly
Postgres's `pg_snapshot` text (`pg_current_snapshot()::text`), e.g.
`"23861432-0@745:750:746,748"`. A plain stream ID (no `@`) is an ordinary feed
cursor. After the replay reaches the feed's end the snapshot is no longer
needed: the next cursor handed out is a plain stream ID.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsift.middleware.errors import FeedError
from pgsift.middleware.feed.position import FeedPosition

_XID_SPAN = 1 << 32
_HALF_SPAN = 1 << 31


_NO_XIP: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A Postgres MVCC snapshot (64-bit `xid8` values, as `pg_current_snapshot()`).

    The one visibility rule of pgsift: bootstrap cursors, dumps and the
    gateway's snapshot/feed handoff all decide with `visible`.
    """

    xmin: int
    xmax: int
    xip: frozenset[int] = _NO_XIP

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        try:
            xmin, xmax, xip = text.split(":")
            # Most snapshots see no transaction in progress: they share one empty set
            # (a subscription keeps its snapshot as long as it lives).
            running = frozenset(int(x) for x in xip.split(",") if x) or _NO_XIP
            return cls(int(xmin), int(xmax), running)
        except ValueError as exc:
            raise FeedError(f"bad snapshot {text!r}: expected xmin:xmax:xip,...") from exc

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, sorted(self.xip)))}"

    def visible(self, xid: int) -> bool:
        """Whether the transaction `xid` had committed when the snapshot was taken."""
        full = self.widen(xid)
        return full < self.xmin or (full < self.xmax and full not in self.xip)

    def widen(self, xid: int) -> int:
        """`xid` as a 64-bit xid: feed entries carry pgoutput's 32-bit ones.

        The nearest 64-bit xid to `xmax`: exact within 2^31 of it, which
        wraparound protection guarantees for any live transaction.
        """
        if xid >= _XID_SPAN:
            return xid
        full = (self.xmax & ~(_XID_SPAN - 1)) | xid
        if full > self.xmax + _HALF_SPAN:
            full -= _XID_SPAN
        elif full < self.xmax - _HALF_SPAN:
            full += _XID_SPAN
        return full


@dataclass(frozen=True, slots=True)
class BootstrapCursor:
    """Where a client continues after a bootstrap: feed position + its snapshot."""

    position: FeedPosition
    snapshot: Snapshot | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", FeedPosition(self.position))

    @classmethod
    def parse(cls, text: str) -> BootstrapCursor:
        """A cursor's text; FeedError (bounded, whatever the text's size) when it is none."""
        position, sep, snapshot = text.partition("@")
        return cls(FeedPosition(position), Snapshot.parse(snapshot) if sep else None)

    def __str__(self) -> str:
        if self.snapshot is None:
            return str(self.position)
        return f"{self.position}@{self.snapshot}"

