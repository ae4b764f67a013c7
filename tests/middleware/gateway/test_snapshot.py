"""Which replayed transactions a snapshot already includes."""

from __future__ import annotations

import pytest

from pgsift.middleware.gateway.snapshot import PgSnapshot


def test_parse() -> None:
    assert PgSnapshot.parse("10:20:12,15") == PgSnapshot(10, 20, frozenset({12, 15}))
    assert PgSnapshot.parse("10:10:") == PgSnapshot(10, 10, frozenset())


@pytest.mark.parametrize(
    ("xid", "included"),
    [
        (5, True), (9, True), (10, True), (12, False), (14, True), (15, False), (20, False),
        (25, False),
    ],
)
def test_includes(xid: int, included: bool) -> None:
    assert PgSnapshot.parse("10:20:12,15").includes(xid) is included


def test_32_bit_xids_are_widened_with_the_epoch() -> None:
    epoch = 3 << 32
    snapshot = PgSnapshot(epoch + 100, epoch + 200, frozenset({epoch + 150}))
    assert snapshot.includes(99)
    assert not snapshot.includes(150)
    assert not snapshot.includes(250)
    # Just below the epoch boundary: the previous epoch, so long committed.
    assert snapshot.includes(2**32 - 5)
    near = PgSnapshot((4 << 32) - 10, (4 << 32) + 5, frozenset())
    assert near.includes(2**32 - 20)  # epoch 3, before xmin
    assert not near.includes(7)  # epoch 4, at/after xmax
