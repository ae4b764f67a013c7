"""When capture stores pending entries at a pause of the stream (pure)."""

from __future__ import annotations

from pgsift.middleware.capture.pacing import BUSY_WITHIN_S, FLUSH_AFTER_S, FlushPacing

SOON = BUSY_WITHIN_S / 2  # a commit this long after the last store: the stream looks busy
QUIET = BUSY_WITHIN_S * 2


def store(pacing: FlushPacing, now: float, lsns: list[int], in_flight: bool = False) -> float:
    """A batch of entries of the transactions `lsns` starting at `now`, stored when due:
    how long it waited."""
    due = pacing.due(now, lsns[0], in_flight)
    pacing.stored(due, lsns[-1])
    return round(due - now, 9)


def test_a_commit_after_a_quiet_spell_is_stored_at_once() -> None:
    pacing = FlushPacing()
    assert store(pacing, 100.0, [1]) == 0
    assert store(pacing, 100.0 + QUIET, [2]) == 0


def test_a_busy_stream_waits_while_the_waits_catch_other_transactions() -> None:
    pacing = FlushPacing()
    now = 100.0
    store(pacing, now, [1])
    for lsn in range(2, 50, 5):
        now += SOON
        assert store(pacing, now, [lsn, lsn + 1, lsn + 2]) == FLUSH_AFTER_S
        now += FLUSH_AFTER_S


def test_a_closed_loop_stops_waiting_after_one_wait_in_vain() -> None:
    """A writer waiting for each change before the next: nothing comes during a wait."""
    pacing = FlushPacing()
    now = 100.0
    store(pacing, now, [1])
    waited = []
    for lsn in range(2, 30):
        now += SOON
        waited.append(store(pacing, now, [lsn]))
        now += waited[-1]
    assert waited == [FLUSH_AFTER_S] + [0] * 27


def test_an_append_under_way_makes_a_batch_wait_and_a_catch_turns_waits_on() -> None:
    pacing = FlushPacing()
    store(pacing, 100.0, [1])
    assert store(pacing, 100.0 + SOON, [2]) == FLUSH_AFTER_S  # in vain: waits off
    assert store(pacing, 101.0 + SOON, [3]) == 0
    assert store(pacing, 102.0, [4], in_flight=True) == FLUSH_AFTER_S
    assert store(pacing, 103.0, [5], in_flight=True) == FLUSH_AFTER_S  # in vain again
    assert store(pacing, 103.0 + SOON, [6]) == 0
    assert store(pacing, 104.0, [7, 8], in_flight=True) == FLUSH_AFTER_S  # caught one
    assert store(pacing, 104.0 + FLUSH_AFTER_S + SOON, [9]) == FLUSH_AFTER_S


def test_a_batch_of_several_transactions_without_a_wait_turns_waits_on() -> None:
    pacing = FlushPacing()
    store(pacing, 100.0, [1])
    store(pacing, 100.0 + SOON, [2])  # in vain
    assert store(pacing, 101.0, [3, 4]) == 0  # they came together anyway
    assert store(pacing, 101.0 + SOON, [5]) == FLUSH_AFTER_S


def test_a_confirmation_alone_counts_as_a_store_but_not_as_a_wait() -> None:
    pacing = FlushPacing()
    store(pacing, 100.0, [1])
    pacing.stored(101.0, None)
    assert store(pacing, 101.0 + SOON, [2]) == FLUSH_AFTER_S


def test_the_chunks_of_one_transaction_catch_nothing() -> None:
    pacing = FlushPacing()
    store(pacing, 100.0, [1])
    store(pacing, 100.0 + SOON, [2, 2, 2])  # waited, only its own chunks came
    assert store(pacing, 100.0 + 2 * SOON + FLUSH_AFTER_S, [3]) == 0
