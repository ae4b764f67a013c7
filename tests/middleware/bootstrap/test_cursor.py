"""Bootstrap cursors: text form, and which replayed transactions a snapshot already holds."""

from __future__ import annotations

import pytest

from pgsift.middleware.bootstrap.cursor import BootstrapCursor, Snapshot
from pgsift.middleware.errors import FeedError


def test_cursor_text_round_trips() -> None:
    for text in ("23861432-0@745:750:746,748", "5-1@10:10:", "42-0"):
        assert str(BootstrapCursor.parse(text)) == text
    assert BootstrapCursor.parse("42-0").snapshot is None


@pytest.mark.parametrize("text", ["", "abc", "12-x@1:2:", "12-0@1:2", "12-0@a:b:"])
def test_bad_cursors_are_refused(text: str) -> None:
    with pytest.raises(FeedError):
        BootstrapCursor.parse(text)


@pytest.mark.parametrize(
    "text", ["9" * 5000 + "-0", "1-" + "9" * 5000, "18446744073709551616-0", "\u00b2-0"]
)
def test_positions_past_64_bits_are_bad_cursors(text: str) -> None:
    with pytest.raises(FeedError):
        BootstrapCursor.parse(text)


def test_visibility_follows_postgres() -> None:
    snapshot = Snapshot(745, 750, frozenset({746, 748}))
    assert snapshot.visible(700) and snapshot.visible(744)
    assert snapshot.visible(745) and snapshot.visible(747) and snapshot.visible(749)
    assert not snapshot.visible(746) and not snapshot.visible(748)
    assert not snapshot.visible(750) and not snapshot.visible(9000)
    stamped = BootstrapCursor("1-0", snapshot).snapshot
    assert stamped is not None and stamped.visible(747)
    assert BootstrapCursor("1-0").snapshot is None


def test_32_bit_feed_xids_are_widened_around_the_epoch() -> None:
    epoch = 1 << 32
    snapshot = Snapshot(3 * epoch + 10, 3 * epoch + 20, frozenset({3 * epoch + 15}))
    assert snapshot.visible(5) and not snapshot.visible(15) and not snapshot.visible(25)
    # Just after a wraparound: xmax is small in its epoch, the old xid was big.
    wrapped = Snapshot(3 * epoch + 2, 3 * epoch + 5)
    assert wrapped.visible(epoch - 3)
    assert not wrapped.visible(6)
