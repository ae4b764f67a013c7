"""Feed positions: bounded parsing, canonical text, order by (LSN, chunk)."""

from __future__ import annotations

import json

import pytest

from pgsift.middleware.errors import FeedError
from pgsift.middleware.feed.position import START, FeedPosition


def test_text_is_canonical_and_is_the_position() -> None:
    assert FeedPosition("42") == "42-0" and FeedPosition("007-01") == "7-1"
    assert FeedPosition.of(42, 3) == "42-3" and START == "0-0"
    position = FeedPosition("18446744073709551615-18446744073709551615")
    assert (position.lsn, position.chunk) == (2**64 - 1, 2**64 - 1)
    assert json.dumps({"cursor": FeedPosition("5-1")}) == '{"cursor": "5-1"}'
    assert FeedPosition.decoded(b"9-2") == "9-2" and FeedPosition.optional(None) is None


@pytest.mark.parametrize(
    "text", ["", "-", "abc", "1-x", "-1", "1-", "1-2-3", " 1-0", "\u00b2-0",
             "18446744073709551616-0", "9" * 5000 + "-0", "1-" + "9" * 5000],
)
def test_anything_else_is_a_feed_error_of_bounded_size(text: str) -> None:
    with pytest.raises(FeedError) as refused:
        FeedPosition(text)
    assert len(str(refused.value)) < 120


def test_order_is_by_lsn_then_chunk_never_by_text() -> None:
    assert FeedPosition("9-0") < FeedPosition("10-0") < "10-1"
    assert max(FeedPosition("9-5"), FeedPosition("10-0")) == "10-0"
    assert sorted([FeedPosition("100-0"), FeedPosition("20-1"), FeedPosition("20-0")]) == [
        "20-0", "20-1", "100-0"
    ]
    assert FeedPosition("10-2") >= "10-2" and FeedPosition("10-2") <= "10-2"


def test_successor_transaction_start_and_the_exclusive_bound() -> None:
    position = FeedPosition("10-2")
    assert position.successor() == "10-3"
    assert position.transaction_start() == "10-0"
    assert position.exclusive == "(10-2"
