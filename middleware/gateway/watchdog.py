"""The feed watchdog: is the tailer keeping up with the feed's head?

Every `interval_s` it reads the newest feed entry's ID over a Redis connection
of its own and compares it with the tailer's position. On a busy feed the
tailer is always a little behind the head at any instant, so "behind" is
measured against a *target*: the head as first seen while the tailer was
short of it. When the tailer reaches the target, the next head it is short of
becomes the new target. The lag is how long ago the current target was seen;
past `bound_s` the tailer counts as stalled and `/healthz` says so (whatever
the cause: a wait that never ends, a CPU-starved process, Redis errors).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.reader import AsyncFeedReader
from pgsift.middleware.gateway.fanout import FeedTailer
from pgsift.middleware.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
# Entries behind are counted up to this many: a range read returns the entries too, and
# a tailer a few entries behind under load would have the watchdog parse a thousand of
# them every second (a tenth of a busy gateway's time).
COUNT_BEHIND_MAX = 100


@dataclass(eq=False)
class FeedWatchdog:
    """Compares the tailer's position with the feed head (read on `feed`, a connection
    of the watchdog's own); see the module docstring."""

    tailer: FeedTailer
    feed: AsyncFeedReader
    bound_s: float
    metrics: GatewayMetrics | None = None
    interval_s: float = INTERVAL_S
    behind: int = field(default=0, init=False)  # entries after the tailer (COUNT_BEHIND_MAX)
    error: str | None = field(default=None, init=False)  # why the head was unreadable, last
    # A head the tailer is short of, and when it was seen.
    _target: tuple[FeedPosition, float] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.metrics is not None:
            self.metrics.lag_seconds.set_function(lambda: self.lag_s)

    @property
    def lag_s(self) -> float:
        """Seconds since the oldest head the tailer has not reached was seen; 0: caught up.

        It goes on growing while the watchdog cannot read the head.
        """
        return 0.0 if self._target is None else time.monotonic() - self._target[1]

    async def run(self) -> None:
        """Observe until cancelled."""
        while True:
            try:
                await self.observe()
                self.error = None
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("the feed watchdog cannot read the feed head: %s", self.error)
            await asyncio.sleep(self.interval_s)

    async def observe(self) -> None:
        """Read the head once and update lag, entries behind and the metrics."""
        now = time.monotonic()
        head = await self.feed.last_id()
        cursor = self.tailer.cursor
        if head is None or cursor is None or cursor >= head:
            self._target = None
            self.behind = 0
        else:
            if self._target is None or cursor >= self._target[0]:
                self._target = (head, now)
            feed = self.feed
            after = await feed.run(feed.queries.positions_from(cursor.exclusive, COUNT_BEHIND_MAX))
            self.behind = len(after)
        if self.metrics is not None:
            self.metrics.entries_behind.set(self.behind)

    async def probe(self) -> str | None:
        """The health check: None while the tailer keeps up, else why it does not."""
        lag_s = self.lag_s
        if lag_s > self.bound_s:
            behind = f"{self.behind}+" if self.behind >= COUNT_BEHIND_MAX else str(self.behind)
            return (
                f"the feed tailer has been behind the feed head for {lag_s:.1f} s "
                f"({behind} entries; bound: gateway_max_feed_lag_s = {self.bound_s:g} s)"
            )
        if self.error is not None:
            return f"cannot read the feed head: {self.error}"
        return None

