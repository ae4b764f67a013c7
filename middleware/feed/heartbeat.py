"""Capture's heartbeat: how complete the feed is, for every consumer to see.

About once a second, capture writes `keys.capture_heartbeat`: the slot position
it has confirmed and `lag_ms`, how long before the write the feed was last known
complete ("every transaction Postgres committed before that moment is in the
feed"; see `pgsift.middleware.capture.runner`). The key is written with an expiry
of `TTL_MS`, so a reader computes the heartbeat's age from Redis's own clock
(`TTL_MS - PTTL`) instead of comparing two hosts' clocks.

When capture stops capturing (crashed, standby, retrying while Redis is full or
Postgres is gone), no one writes the key and the heartbeat ages: the signal
that tells consumers the feed may be missing recent transactions. Like the feed,
the write is fenced: a deposed leader cannot keep a heartbeat alive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.entry import format_lsn, parse_lsn
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.writer import FencedError

EVERY_S = 1.0
TTL_MS = 24 * 3600 * 1000  # past this a heartbeat is simply gone ("none")

# KEYS: heartbeat, capture lock. ARGV: fencing token, value, TTL_MS.
WRITE_SCRIPT = """
local holder = redis.call('GET', KEYS[2])
if not holder or string.match(holder, '^(%d+):') ~= ARGV[1] then
  return redis.error_reply('PGSIFT_FENCED capture lock lost (held by ' .. tostring(holder) .. ')')
end
return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
"""
# KEYS: heartbeat, feed stream. Returns {value or nil, PTTL, newest stream ID or nil}.
# A script, not MULTI: Redis refuses MULTI when it is out of memory, which is
# exactly when readers need to see the heartbeat age.
READ_SCRIPT = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local newest = false
if #last > 0 then newest = last[1][1] end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), newest}
"""


@dataclass(frozen=True)
class Heartbeat:
    """A heartbeat as read: capture's confirmed position and how old the feed's
    completeness was at the moment of reading."""

    confirmed_lsn: int
    age_s: float


@dataclass(frozen=True)
class HeartbeatReading:
    """The heartbeat (None: there is none) and the feed's newest LSN, read together."""

    heartbeat: Heartbeat | None
    feed_end_lsn: int  # 0: the feed is empty


class HeartbeatWriter:
    """Writes the heartbeat of `database` while the capture lock holds `token`."""

    def __init__(self, client: redis.Redis[bytes], database: str, token: int) -> None:
        self._keys = [keys.capture_heartbeat(database), keys.capture_lock(database)]
        self._token = str(token)
        self._script = client.register_script(WRITE_SCRIPT)

    def beat(self, confirmed_lsn: int, lag_s: float) -> None:
        """The feed was complete `lag_s` seconds ago; the slot is confirmed to `confirmed_lsn`.

        Raises FencedError when the lock is no longer ours, redis errors as they come
        (an out-of-memory Redis refuses the write: the heartbeat then ages).
        """
        value = json.dumps({"lsn": format_lsn(confirmed_lsn), "lag_ms": round(lag_s * 1000)})
        try:
            self._script(keys=self._keys, args=[self._token, value, TTL_MS])
        except redis.ResponseError as exc:
            if "PGSIFT_FENCED" in str(exc):
                raise FencedError(str(exc).replace("PGSIFT_FENCED ", "")) from exc
            raise


class HeartbeatReader:
    """Reads the heartbeat of `database` with the feed's newest position (asyncio)."""

    def __init__(self, client: redis.asyncio.Redis[bytes], database: str) -> None:
        self._keys = [keys.capture_heartbeat(database), keys.feed_stream(database)]
        self._script = client.register_script(READ_SCRIPT)

    async def read(self) -> HeartbeatReading:
        value, pttl, newest = await self._script(keys=self._keys)
        return parse_reading(value, int(pttl), newest)


def parse_reading(value: Any, pttl: int, newest: Any) -> HeartbeatReading:
    """A `HeartbeatReading` from READ_SCRIPT's reply."""
    end = 0 if newest is None else FeedPosition.decoded(newest).lsn
    if value is None or pttl < 0:  # -2: no key; -1: no expiry, not written by capture
        return HeartbeatReading(None, end)
    try:
        document = json.loads(_text(value))
        confirmed, lag_ms = parse_lsn(str(document["lsn"])), float(document["lag_ms"])
    except (ValueError, KeyError, TypeError):
        return HeartbeatReading(None, end)
    age_s = (TTL_MS - pttl + lag_ms) / 1000
    return HeartbeatReading(Heartbeat(confirmed, max(0.0, age_s)), end)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
