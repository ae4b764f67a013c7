"""Fenced, idempotent appends to a database's feed.

Capture appends through one Lua script so that two checks and the append are
atomic on the Redis side:

* fencing: the capture lock must still hold *our* fencing token. A leader that
  was paused (GC, SIGSTOP, network partition) past its lock's expiry, while
  another process took over, gets `FencedError` instead of appending;
* duplicates: an entry whose ID is not above the stream's last ID is already
  stored (capture re-sends what it had not confirmed before a crash) and is
  skipped silently. Redis compares stream IDs itself, so LSNs never pass
  through Lua's floating-point numbers.

Entries are appended in batches (one round trip for many small transactions).
The writer never trims: retention is `pgsift.workers.trim`'s, which records
what it removed (see `pgsift.middleware.feed.retention`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]
import redis

from pgsift.middleware.errors import FeedError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import encode_field
from pgsift.middleware.feed.entry import FeedEntry

# KEYS: stream, lock. ARGV: token and the entries as one
# msgpack array of [id, field, value] (unpacked by Redis's own cmsgpack: one
# argument instead of three per entry saves most of the client-side cost).
# Returns the number of entries appended; the rest were already stored.
APPEND_SCRIPT = """
local holder = redis.call('GET', KEYS[2])
if not holder or string.match(holder, '^(%d+):') ~= ARGV[1] then
  return redis.error_reply('PGSIFT_FENCED capture lock lost (held by ' .. tostring(holder) .. ')')
end
local appended = 0
for _, e in ipairs(cmsgpack.unpack(ARGV[2])) do
  local ok = redis.pcall('XADD', KEYS[1], e[1], e[2], e[3])
  if type(ok) == 'table' and ok.err then
    if not string.find(ok.err, 'equal or smaller') then
      return redis.error_reply(ok.err)
    end
  else
    appended = appended + 1
  end
end
return appended
"""


class FencedError(FeedError):
    """The capture lock no longer holds this writer's fencing token."""


# An entry as appended: its stream ID, field name and field value.
EncodedEntry = tuple[str, bytes, bytes]


def encode(entry: FeedEntry) -> EncodedEntry:
    return (entry.id, *encode_field(entry))


@dataclass(frozen=True)
class AppendResult:
    appended: int
    skipped: int


class FeedWriter:
    """Appends FeedEntries to `keys.feed_stream(database)` under fencing token `token`."""

    def __init__(
        self, client: redis.Redis[bytes], database: str, token: int
    ) -> None:
        self._client = client
        self._stream = keys.feed_stream(database)
        self._lock = keys.capture_lock(database)
        self._token = str(token)
        self._script = client.register_script(APPEND_SCRIPT)

    def append(self, entries: Sequence[FeedEntry]) -> AppendResult:
        """Append `entries` (in ID order) in one atomic call; IDs already stored are skipped.

        Raises FencedError when the lock is lost (nothing was appended) and
        redis.ConnectionError/TimeoutError when Redis is unreachable (the caller
        retries: re-appending is harmless).
        """
        return self.append_encoded([encode(entry) for entry in entries])

    def append_encoded(self, entries: Sequence[EncodedEntry]) -> AppendResult:
        """`append` for entries already encoded (capture encodes as it decodes)."""
        if not entries:
            return AppendResult(0, 0)
        # use_bin_type=False: Lua's cmsgpack predates msgpack's bin type.
        packed = msgpack.packb(entries, use_bin_type=False)
        try:
            appended = int(
                self._script(
                    keys=[self._stream, self._lock], args=[self._token, packed]
                )
            )
        except redis.ResponseError as exc:
            if "PGSIFT_FENCED" in str(exc):
                raise FencedError(str(exc).replace("PGSIFT_FENCED ", "")) from exc
            raise FeedError(f"appending to {self._stream} failed: {exc}") from exc
        return AppendResult(appended, len(entries) - appended)
