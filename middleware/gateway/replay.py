"""Where a feed replay after a snapshot must start: `replay_start` (a client's cursor
names the position and the snapshot: `parse_cursor`).

A snapshot recorded at feed position `p` may miss transactions at or below
`p`: visibility does not follow the feed's (commit-LSN) order (see
`pgsift.middleware.gateway.session`). The replay starts before the oldest of
them; `sees_through` tells whether a snapshot misses none (inner sets and
relational bootstraps retake such a snapshot instead of replaying).
"""

from __future__ import annotations

from pgsift.middleware.bootstrap.cursor import BootstrapCursor, Snapshot
from pgsift.middleware.errors import FeedError, GatewayError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import START, FeedPosition
from pgsift.middleware.feed.retention import AsyncFeedRetention
from pgsift.middleware.gateway.recent import RecentEntries

# Error messages quote at most this much of a bad cursor.
CURSOR_SHOWN = 60
# How far `replay_start` looks back from the recorded position for transactions
# the snapshot does not see: at most this many entries, and only entries that
# committed at most this long before the newest one looked at. A transaction
# there that is invisible had been committing (commit record written, not yet
# visible) since before the recorded position: for microseconds normally, for a
# standby round trip under synchronous replication. Seconds cover a slow
# standby; a commit held longer than that is lost to the subscription (bounding
# the walk keeps a subscription's start cheap on a busy feed, where the entry
# bound is reached first: at 1,000 transactions/s it covers one second).
HANDOFF_ENTRIES = 1000
HANDOFF_S = 5.0
HANDOFF_PAGE = 100
# How long the walk back waits for the tailer to read up to the recorded position,
# so that it reads the tailer's decoded entries (`RecentEntries`) rather than Redis.
RECENT_WAIT_S = 0.5


async def replay_start(
    feed: AsyncFeedRetention,
    position: FeedPosition,
    stamp: Snapshot,
    recent: RecentEntries | None = None,
) -> FeedPosition:
    """Where the replay of a snapshot recorded at `position` must start.

    Before the oldest transaction at or below `position` (within
    `HANDOFF_ENTRIES` / `HANDOFF_S`) that `stamp` does not see; `position`
    itself when it sees them all. Later ones it does see are skipped by the
    replay (`Snapshot.visible`).
    """
    walked, older = await _walk_back(feed, position, recent)
    start = position
    for index, entry in enumerate(walked):
        if not stamp.visible(entry.xid):
            following = walked[index + 1] if index + 1 < len(walked) else older
            start = following.id if following is not None else await _floor(feed)
    return start


async def sees_through(
    feed: AsyncFeedRetention,
    position: FeedPosition,
    stamp: Snapshot,
    recent: RecentEntries | None = None,
) -> bool:
    """Whether `stamp` sees every transaction at or below `position` (within the bounds)."""
    walked, _ = await _walk_back(feed, position, recent)
    return all(stamp.visible(entry.xid) for entry in walked)


async def _walk_back(
    feed: AsyncFeedRetention, position: FeedPosition, recent: RecentEntries | None
) -> tuple[list[FeedEntry], FeedEntry | None]:
    """The feed's entries at or below `position`, newest first, within the bounds;
    and the next older entry (None when there is none). Read from `recent` where it
    holds them (usually the tailer has read up to `position`, or will in a moment)."""
    if recent is not None:
        await recent.reach(position, RECENT_WAIT_S)
    walked: list[FeedEntry] = []
    upper, inclusive = position, True
    while True:
        entries = None if recent is None else recent.before(
            upper, inclusive=inclusive, count=HANDOFF_PAGE
        )
        if entries is None:
            bound = upper if inclusive else upper.exclusive
            entries = await feed.run(feed.queries.entries_before(bound, HANDOFF_PAGE))
        if not entries:
            return walked, None
        for entry in entries:
            newest = walked[0].commit_time if walked else entry.commit_time
            too_old = (newest - entry.commit_time).total_seconds() > HANDOFF_S
            # Stop only between transactions (at the last chunk of an older one).
            if entry.last and (len(walked) >= HANDOFF_ENTRIES or too_old):
                return walked, entry
            walked.append(entry)
        upper, inclusive = walked[-1].id, False


async def _floor(feed: AsyncFeedRetention) -> FeedPosition:
    """A position below every retained entry: the trim marker, else the start."""
    return (await feed.bounds()).trimmed or START


def parse_cursor(cursor: str) -> tuple[FeedPosition, Snapshot | None]:
    """A client's cursor: a feed position, optionally `@<snapshot>`.

    The `@` form is a bootstrap's (`GET /v1/bootstrap`, see
    `pgsift.middleware.bootstrap.cursor`): the feed position recorded before its
    snapshot, and that snapshot, whose transactions the replay skips.
    GatewayError when it is neither.
    """
    try:
        parsed = BootstrapCursor.parse(cursor)
    except FeedError as exc:
        shown = cursor if len(cursor) <= CURSOR_SHOWN else cursor[:CURSOR_SHOWN] + "..."
        raise GatewayError(
            f"cursor {shown!r} is not a feed position (expected '<lsn>-<n>')"
        ) from exc
    return parsed.position, parsed.snapshot
