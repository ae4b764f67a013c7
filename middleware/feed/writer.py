"""Fenced, idempotent appends to a database's feed.

Capture appends through one Lua script so that two checks and the append are
atomic on the Redis side:

* fencing: the capture lock must still hold *our* fencing token. A leader that
  was paused (GC, SIGSTOP, network partition) past its lock's expiry, while
  another process took over, gets `FencedError` instead of appending;
* duplicates: an entry whose ID is not above the stream's last ID was stored
  before (capture re-sends what it had not confirmed before a crash) and is
  skipped, but only when the stored entry is byte-identical, or was trimmed
  since. Anything else means the transaction was cut into other chunks than the
  stored ones (skipping would lose or repeat part of it): the script stops
  before appending anything, and unless the stored entry decodes to the same
  chunk (only the encoding changed, say across an upgrade) the writer raises
  `FeedConflictError`. Redis compares stream IDs itself, so LSNs never pass
  through Lua's floating-point numbers.

Entries are appended in batches (one round trip for many small transactions).
The writer never trims: retention is `pgsift.workers.trim`'s, which records
what it removed (see `pgsift.middleware.feed.bounds`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]
import redis

from pgsift.middleware.errors import FeedError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.codec import decode_entry, encode_field
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.feed.position import FeedPosition
from pgsift.middleware.feed.reader import FeedReader

log = logging.getLogger(__name__)

# KEYS: stream, lock. ARGV: token and the entries as one
# msgpack array of [id, field, value] (unpacked by Redis's own cmsgpack: one
# argument instead of three per entry saves most of the client-side cost).
# Returns the number of entries appended; the rest were already stored. An
# entry below the tail that is stored differently, or missing while an older
# one is stored (trimming removes only the oldest), ends the script with
# `PGSIFT_DIFFERS <1-based index>`: IDs ascend, so nothing was appended yet.
APPEND_SCRIPT = """
local holder = redis.call('GET', KEYS[2])
if not holder or string.match(holder, '^(%d+):') ~= ARGV[1] then
  return redis.error_reply('PGSIFT_FENCED capture lock lost (held by ' .. tostring(holder) .. ')')
end
local appended = 0
for i, e in ipairs(cmsgpack.unpack(ARGV[2])) do
  local ok = redis.pcall('XADD', KEYS[1], e[1], e[2], e[3])
  if type(ok) == 'table' and ok.err then
    if not string.find(ok.err, 'equal or smaller') then
      return redis.error_reply(ok.err)
    end
    local stored = redis.call('XRANGE', KEYS[1], e[1], e[1])
    if #stored == 0 then
      if #redis.call('XRANGE', KEYS[1], '-', '(' .. e[1], 'COUNT', 1) > 0 then
        return redis.error_reply('PGSIFT_DIFFERS ' .. i)
      end
    else
      local fields = stored[1][2]
      if #fields ~= 2 or fields[1] ~= e[2] or fields[2] ~= e[3] then
        return redis.error_reply('PGSIFT_DIFFERS ' .. i)
      end
    end
  else
    appended = appended + 1
  end
end
return appended
"""


class FencedError(FeedError):
    """The capture lock no longer holds this writer's fencing token."""


class FeedConflictError(FeedError):
    """A re-sent entry is not the one stored under its ID: its transaction was cut
    into other chunks than the stored ones (e.g. the stored chunk size was lost)."""


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
        self._reader = FeedReader(client, database)
        self._lock = keys.capture_lock(database)
        self._token = str(token)
        self._script = client.register_script(APPEND_SCRIPT)

    def append(self, entries: Sequence[FeedEntry]) -> AppendResult:
        """Append `entries` (in ID order) in one atomic call; entries already stored are skipped.

        Raises FencedError when the lock is lost (nothing was appended),
        FeedConflictError when a re-sent entry is not the stored one (nothing of
        it or after it was appended), and redis.ConnectionError/TimeoutError when
        Redis is unreachable (the caller retries: re-appending is harmless).
        """
        return self.append_encoded([encode(entry) for entry in entries])

    def append_encoded(self, entries: Sequence[EncodedEntry]) -> AppendResult:
        """`append` for entries already encoded (capture encodes as it decodes)."""
        skipped = 0
        while entries:
            appended, differs = self._run(entries)
            if differs is None:
                return AppendResult(appended, skipped + len(entries) - appended)
            # The ones before it were stored already, identically; nothing was appended.
            self._check_same_chunk(entries[differs])
            skipped += differs + 1
            entries = entries[differs + 1:]
        return AppendResult(0, skipped)

    def _run(self, entries: Sequence[EncodedEntry]) -> tuple[int, int | None]:
        """One run of the script: entries appended, and the index of a stored one that
        differs (None when there was none)."""
        # use_bin_type=False: Lua's cmsgpack predates msgpack's bin type.
        packed = msgpack.packb(entries, use_bin_type=False)
        try:
            appended = int(
                self._script(keys=[self._stream, self._lock], args=[self._token, packed])
            )
        except redis.ResponseError as exc:
            text = str(exc)
            if "PGSIFT_FENCED" in text:
                raise FencedError(text.replace("PGSIFT_FENCED ", "")) from exc
            if text.startswith("PGSIFT_DIFFERS "):
                return 0, int(text.split()[1]) - 1
            raise FeedError(f"appending to {self._stream} failed: {exc}") from exc
        return appended, None

    def _check_same_chunk(self, entry: EncodedEntry) -> None:
        """Accept a re-sent entry stored with other bytes only if it is the same chunk."""
        entry_id, field, value = entry
        position = FeedPosition(entry_id)
        feed = self._reader
        stored = feed.run(feed.queries.entries_from(position, 1))
        if not stored or stored[0].id != position:
            raise FeedConflictError(
                f"re-sent feed entry {entry_id} is missing from {self._stream} although later "
                "ones are stored: the transaction was cut into other chunks before; "
                "appending it would repeat or lose part of it"
            )
        old, new = stored[0], decode_entry(entry_id, {field: value})
        if _cut(old) != _cut(new):
            raise FeedConflictError(
                f"re-sent feed entry {entry_id} differs from the stored one ({len(new.changes)} "
                f"changes, last={new.last}; stored: {len(old.changes)}, last={old.last}): the "
                "transaction was cut into other chunks before; skipping it would lose part of it"
            )
        log.warning("feed entry %s was stored in another encoding (pgsift upgraded?); "
                    "keeping the stored one", entry_id)


def _cut(entry: FeedEntry) -> tuple[object, ...]:
    """What makes two chunks the same piece of the same transaction.

    Not `schema_changes`: capture saves the column fingerprints it flagged with
    the batch that carries the flag, so a capture killed before confirming the
    slot re-sends that transaction without the flag (its fingerprints are known
    now). The stored entry, flag included, is the one kept."""
    changes = tuple((change.table, change.op) for change in entry.changes)
    return entry.xid, entry.last, changes
