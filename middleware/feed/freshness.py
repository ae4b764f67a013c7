"""How fresh a consumer's view of the feed is, from capture's heartbeat.

A consumer (the gateway's tailer, and the batch loader it keeps fresh) has seen
everything committed before moment T when

* capture wrote a heartbeat saying the feed was complete at T, and
* the consumer has read the feed up to where it ended when that heartbeat was read.

`FeedFreshness` polls the heartbeat together with the feed's newest position and
keeps the pairs until the consumer's own position (`delivered()`) passes them;
its view's age is then the age of the newest heartbeat passed. So the view goes
stale when capture stops (no new heartbeats), when this process cannot read
Redis (no reads), and when its own tailer falls behind (heartbeats not passed),
and it only turns fresh again once whatever capture caught up on has been read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import redis.exceptions

from pgsift.middleware.feed.heartbeat import HeartbeatReader

log = logging.getLogger(__name__)

POLL_S = 0.5
REMEMBERED = 256  # heartbeats waiting for the consumer to pass them; older ones are dropped


class FeedFreshness:
    """The age of a consumer's view of the feed; stale past `stale_after_s`."""

    def __init__(
        self,
        reader: HeartbeatReader,
        *,
        stale_after_s: float,
        delivered: Callable[[], int],
        poll_s: float = POLL_S,
    ) -> None:
        self.stale_after_s = stale_after_s
        self._reader = reader
        self._delivered = delivered
        self._poll_s = poll_s
        # (monotonic time the feed was complete at, feed end LSN when that was read)
        self._waiting: deque[tuple[float, int]] = deque(maxlen=REMEMBERED)
        self._view_as_of: float | None = None  # the newest such moment the consumer has passed
        self._heartbeat_as_of: float | None = None  # the newest heartbeat read at all
        self._read_error: str | None = None

    async def run(self) -> None:
        """Poll the heartbeat until cancelled; errors only make the view older."""
        while True:
            try:
                await self.poll()
            except (redis.exceptions.RedisError, OSError) as exc:
                if self._read_error is None:
                    log.warning("cannot read capture's heartbeat: %s", exc)
                self._read_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self._poll_s)

    async def poll(self) -> None:
        """Read the heartbeat once."""
        reading = await self._reader.read()
        self._read_error = None
        if reading.heartbeat is None:
            return
        as_of = time.monotonic() - reading.heartbeat.age_s
        if self._heartbeat_as_of is None or as_of > self._heartbeat_as_of:
            self._heartbeat_as_of = as_of
        self._waiting.append((as_of, reading.feed_end_lsn))

    def age_s(self) -> float | None:
        """Seconds since the moment up to which this consumer has seen every transaction;
        None before it has passed any heartbeat."""
        delivered = self._delivered()
        while self._waiting and self._waiting[0][1] <= delivered:
            as_of, _ = self._waiting.popleft()
            if self._view_as_of is None or as_of > self._view_as_of:
                self._view_as_of = as_of
        if self._view_as_of is None:
            return None
        return max(0.0, time.monotonic() - self._view_as_of)

    def fresh(self) -> bool:
        age = self.age_s()
        return age is not None and age <= self.stale_after_s

    def problem(self) -> str | None:
        """Why the view is stale, for an operator; None while it is fresh."""
        age = self.age_s()
        if age is not None and age <= self.stale_after_s:
            return None
        bound = f"feed_stale_after_s = {self.stale_after_s:g}"
        if self._read_error is not None:
            return f"cannot read capture's heartbeat from Redis ({self._read_error})"
        if self._heartbeat_as_of is None:
            return (
                "no heartbeat from capture in Redis: is `pgsift capture` running (and leading) "
                "for this database?"
            )
        heartbeat_age = time.monotonic() - self._heartbeat_as_of
        if heartbeat_age > self.stale_after_s:
            return (
                f"capture's newest heartbeat is {heartbeat_age:.1f} s old ({bound}): capture is "
                "down, in standby only, or retrying (Redis full or unreachable, Postgres gone); "
                "its log says which"
            )
        return (
            f"this process has not read the feed up to capture's heartbeat ({bound}): "
            "its feed tailer is behind or stopped"
        )
