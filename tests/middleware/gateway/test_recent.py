"""The tailer's recent entries answer as XREAD / XREVRANGE would, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import START, FeedPosition
from pgsift.middleware.gateway.recent import RecentEntries
from pgsift.subscriptions.change import Change

AT = datetime(2026, 1, 1, tzinfo=UTC)


def entry(lsn: int, chunk: int = 0, changes: int = 1) -> FeedEntry:
    rows = tuple(Change("public.t", "insert", {"id": n}, {"id": n}, None) for n in range(changes))
    return FeedEntry(lsn=lsn, xid=lsn, commit_time=AT, changes=rows, chunk=chunk)


def ids(entries: list[FeedEntry] | None) -> list[str] | None:
    return None if entries is None else [e.id for e in entries]


def test_nothing_is_known_before_a_reset() -> None:
    recent = RecentEntries()
    recent.append(entry(5))
    assert recent.after(START, 10) is None
    assert recent.before(FeedPosition("5-0"), inclusive=True, count=1) is None


def test_reads_inside_the_run_are_answered_like_redis() -> None:
    recent = RecentEntries()
    recent.reset(FeedPosition("10-0"))
    for lsn in (11, 12, 13, 14):
        recent.append(entry(lsn))
    assert ids(recent.after(FeedPosition("10-0"), 2)) == ["11-0", "12-0"]
    assert ids(recent.after(FeedPosition("12-0"), 10)) == ["13-0", "14-0"]
    assert recent.after(FeedPosition("14-0"), 10) is None  # nothing after it yet
    assert recent.after(FeedPosition("9-0"), 10) is None  # 10-0 itself is not held
    assert ids(recent.before(FeedPosition("13-0"), inclusive=True, count=2)) == ["13-0", "12-0"]
    assert ids(recent.before(FeedPosition("13-0"), inclusive=False, count=2)) == ["12-0", "11-0"]
    assert recent.before(FeedPosition("13-0"), inclusive=True, count=4) is None  # needs 10-0
    assert recent.before(FeedPosition("15-0"), inclusive=True, count=1) is None  # not read yet


def test_the_oldest_go_first_and_a_reset_starts_over() -> None:
    recent = RecentEntries(max_entries=3, max_changes=5)
    recent.reset(START)
    for lsn in (1, 2, 3, 4):
        recent.append(entry(lsn))
    assert recent.after(FeedPosition("1-0"), 10) is not None
    assert recent.after(START, 10) is None  # 1-0 went
    recent.append(entry(5, changes=4))  # over both bounds: 2-0 and 3-0 go
    assert ids(recent.after(FeedPosition("4-0"), 10)) == ["5-0"]
    recent.reset(FeedPosition("9-0"))
    assert recent.after(FeedPosition("4-0"), 10) is None
    recent.append(entry(10))
    recent.append(entry(10))  # read again after a retry
    assert ids(recent.after(FeedPosition("9-0"), 10)) == ["10-0"]


async def test_reach_waits_for_the_tailer() -> None:
    recent = RecentEntries()
    recent.reset(FeedPosition("1-0"))
    assert not await recent.reach(FeedPosition("2-0"), 0.01)
    recent.append(entry(2))
    assert await recent.reach(FeedPosition("2-0"), 0.01)
