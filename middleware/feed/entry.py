"""The feed's value type: one committed transaction (or one chunk of a big one)."""

from __future__ import annotations

from datetime import datetime

from pgsift.middleware.feed.position import FeedPosition
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.records import record


@record
class FeedEntry:
    """A committed transaction as stored in the feed.

    The stream ID is `<commit LSN as int>-<chunk>`: commit LSNs grow in commit
    order, so Redis itself refuses an entry that capture re-sends after a crash.
    A transaction too big for one entry is split into chunks 0, 1, ... that
    share the LSN; `last` marks the final one. `schema_changes` names tables
    whose columns changed in this transaction (clients of them must refetch).
    """

    lsn: int
    xid: int
    commit_time: datetime
    changes: tuple[Change, ...]
    chunk: int = 0
    last: bool = True
    schema_changes: tuple[str, ...] = ()

    @property
    def id(self) -> FeedPosition:
        """Its position in the feed: the Redis stream ID."""
        return FeedPosition.of(self.lsn, self.chunk)


def format_lsn(lsn: int) -> str:
    """Postgres's text form of an LSN: `0/16B3748`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """Parse Postgres's text form of an LSN into an int."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
