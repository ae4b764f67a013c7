"""Which replayed transactions a snapshot already includes."""

from __future__ import annotations

import pytest

from pgsift.middleware.bootstrap.cursor import Snapshot


def test_parse() -> None:
    assert Snapshot.parse("10:20:12,15") == Snapshot(10, 20, frozenset({12, 15}))
    assert Snapshot.parse("10:10:") == Snapshot(10, 10, frozenset())


@pytest.mark.parametrize(
    ("xid", "included"),
    [
        (5, True), (9, True), (10, True), (12, False), (14, True), (15, False), (20, False),
        (25, False),
    ],
)
def test_includes(xid: int, included: bool) -> None:
    assert Snapshot.parse("10:20:12,15").visible(xid) is included


def test_32_bit_xids_are_widened_with_the_epoch() -> None:
    epoch = 3 << 32
    snapshot = Snapshot(epoch + 100, epoch + 200, frozenset({epoch + 150}))
    assert snapshot.visible(99)
    assert not snapshot.visible(150)
    assert not snapshot.visible(250)
    # Just below the epoch boundary: the previous epoch, so long committed.
    assert snapshot.visible(2**32 - 5)
    near = Snapshot((4 << 32) - 10, (4 << 32) + 5, frozenset())
    assert near.visible(2**32 - 20)  # epoch 3, before xmin
    assert not near.visible(7)  # epoch 4, at/after xmax
