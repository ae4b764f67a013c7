"""When capture stores the entries it holds at a pause of the replication stream.

Stored at every pause, a few thousand small transactions a second cost one
append each (a script run in Redis, a wake-up of every gateway's tailer, a slot
confirmation): at 1,000-2,000 commits/s capture and serve spent two to three
times the CPU per commit they spend at 5,000 (`bench/e2e/run.py`), on a machine
where that CPU is what the latency waits for. So while the stream is busy, the
entries wait up to `FLUSH_AFTER_S` for more before they are stored. Busy means:

* an append is still under way: transactions come faster than Redis stores
  them; or
* the last store was less than `BUSY_WITHIN_S` ago, unless the last wait was in
  vain (no other transaction came during it). A writer that waits for its own
  change to reach a client before it writes the next one (a closed loop: one
  user's edits, `bench/relational`) makes every store look recent, yet nothing
  ever comes during the wait: each wait only added `FLUSH_AFTER_S` to each of
  its changes. A wait that catches another transaction, or a batch holding
  several without waiting, turns the waits on again.

A commit after a quiet spell is stored at once (nothing else is coming to share
the append with).
"""

from __future__ import annotations

import math

FLUSH_AFTER_S = 0.005
BUSY_WITHIN_S = 0.01


class FlushPacing:
    """Tells when a batch of pending entries is due (`due`), learns from each store
    (`stored`) whether waiting catches anything. Times are `time.monotonic()`."""

    __slots__ = ("_first_lsn", "_waited", "stored_at", "waits_pay")

    def __init__(self) -> None:
        self.stored_at = -math.inf  # the last store (entries or a confirmation handed on)
        self.waits_pay = True  # the last wait caught another transaction
        self._first_lsn = 0  # the transaction of the pending batch's first entry
        self._waited = False  # whether the pending batch was given time to wait

    def due(self, now: float, lsn: int, in_flight: bool) -> float:
        """When a batch that starts now, with an entry of the transaction at `lsn`, is
        stored at a pause; `in_flight`: an append is still under way."""
        self._first_lsn = lsn
        busy = in_flight or (self.waits_pay and now - self.stored_at < BUSY_WITHIN_S)
        self._waited = busy
        return now + FLUSH_AFTER_S if busy else now

    def stored(self, now: float, last_lsn: int | None) -> None:
        """A batch went to the appender; `last_lsn`: the transaction of its last entry
        (None: it held no entries, only a position to confirm)."""
        self.stored_at = now
        if last_lsn is None:
            return
        caught = last_lsn != self._first_lsn
        if caught or self._waited:
            self.waits_pay = caught
