"""Chunking of transactions and schema-change detection (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgsift.middleware.capture.chunker import SchemaTracker, TransactionChunker
from pgsift.middleware.errors import CaptureError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.change import Change

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def change(i: int) -> Change:
    return Change("public.t", "insert", {"id": i}, {"id": i}, None)


def run(assembler: TransactionChunker, count: int, lsn: int = 100) -> list[FeedEntry]:
    assembler.begin(lsn, 7, WHEN)
    out = [e for e in (assembler.add(change(i)) for i in range(count)) if e is not None]
    final = assembler.commit()
    return out + ([final] if final else [])


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (3, [3]), (4, [3, 1]), (9, [3, 3, 3]), (10, [3, 3, 3, 1])],
)
def test_chunks_are_full_except_the_last_which_is_never_empty(
    count: int, sizes: list[int]
) -> None:
    entries = run(TransactionChunker(3), count)
    assert [len(e.changes) for e in entries] == sizes
    assert [e.id for e in entries] == [f"100-{i}" for i in range(len(sizes))]
    assert [e.last for e in entries] == [i == len(sizes) - 1 for i in range(len(sizes))]
    assert [c.key for e in entries for c in e.changes] == [{"id": i} for i in range(count)]


def test_the_same_transaction_is_cut_the_same_way_again() -> None:
    assembler = TransactionChunker(4)
    first = run(assembler, 11)
    assembler.begin(100, 7, WHEN)
    assembler.add(change(0))
    assembler.abort()  # the stream broke mid-transaction; Postgres re-sends it
    assert run(assembler, 11) == first


def test_schema_changes_ride_on_the_chunk_being_built() -> None:
    assembler = TransactionChunker(2)
    assembler.begin(100, 7, WHEN)
    assembler.add(change(0))
    assembler.add(change(1))
    assembler.schema_changed("public.t")
    first = assembler.add(change(2))
    final = assembler.commit()
    assert first is not None and first.schema_changes == ()
    assert final is not None and final.schema_changes == ("public.t",)


def test_protocol_violations_are_errors() -> None:
    assembler = TransactionChunker(2)
    with pytest.raises(CaptureError):
        assembler.commit()
    assembler.begin(1, 1, WHEN)
    with pytest.raises(CaptureError):
        assembler.begin(2, 2, WHEN)
    with pytest.raises(CaptureError):
        TransactionChunker(0)


def test_schema_tracker_flags_changes_not_first_sightings() -> None:
    tracker = SchemaTracker({"public.a": "f1"})
    assert not tracker.observe("public.a", "f1")
    assert not tracker.observe("public.b", "g1")  # first seen: nothing to compare
    assert tracker.observe("public.a", "f2")
    assert tracker.take_unsaved() == {"public.b": "g1", "public.a": "f2"}
    assert tracker.take_unsaved() == {}
