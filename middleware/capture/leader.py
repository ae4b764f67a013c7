"""One active capture per database: a Redis lock with expiry and a fencing token.

The lock's value is `"<token>:<owner>"`, the token a fresh number from INCR on
`keys.capture_fence`, so every leadership gets a larger token than the last.
The feed writer's script appends only while the lock holds its token: a leader
that stalls past the expiry cannot write once someone else holds the lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

import redis

from pgsift.middleware.feed import keys

log = logging.getLogger(__name__)

# Extend only our own lock (compare-and-expire); 1 = renewed, 0 = lost.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLock:
    """The capture lock of one database, held by `owner` while `token` is set."""

    def __init__(
        self, client: redis.Redis[bytes], database: str, *, ttl_s: float, owner: str | None = None
    ) -> None:
        self._client = client
        self._key = keys.capture_lock(database)
        self._fence = keys.capture_fence(database)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner or default_owner()
        self.token: int | None = None
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    @property
    def value(self) -> str:
        return f"{self.token}:{self.owner}"

    def try_acquire(self) -> bool:
        """Take the lock if it is free; on success `token` is our new fencing token."""
        if self._client.exists(self._key):
            return False
        token = int(self._client.incr(self._fence))
        if self._client.set(self._key, f"{token}:{self.owner}", nx=True, px=self.ttl_ms):
            self.token = token
            return True
        return False

    def acquire(self, stop: threading.Event, *, poll_s: float | None = None) -> bool:
        """Wait as standby until the lock is ours (True) or `stop` is set (False)."""
        poll = poll_s if poll_s is not None else max(0.1, self.ttl_ms / 4000)
        announced = False
        while not stop.is_set():
            if self.try_acquire():
                log.info("capture lock acquired (fencing token %s)", self.token)
                return True
            if not announced:
                holder = self._client.get(self._key)
                log.info("standby: capture lock held by %s", holder.decode() if holder else "?")
                announced = True
            stop.wait(poll)
        return False

    def renew(self) -> bool:
        """Extend our lock; False when it is no longer ours (we must stop writing)."""
        if self.token is None:
            return False
        return bool(self._renew(keys=[self._key], args=[self.value, self.ttl_ms]))

    def release(self) -> None:
        """Give the lock up (only if still ours), so a standby takes over at once."""
        if self.token is not None:
            self._release(keys=[self._key], args=[self.value])
            self.token = None
