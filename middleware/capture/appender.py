"""Appending batches to the feed on a thread of its own.

While Redis stores one batch, the replication thread decodes the next (the
socket wait releases the GIL). Batches arrive encoded: this thread only talks
to Redis, so it rarely needs the GIL the decoder holds (measured: encoding
here instead cost capture 15% of its throughput). At most `DEPTH` batches
wait, so memory stays bounded and a slow Redis slows the replication stream
down instead.
`acked_lsn` only moves after Redis acknowledged a batch: it is what the
replication thread may confirm to the slot.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from dataclasses import dataclass

import redis

from pgsift.middleware.feed import keys
from pgsift.middleware.feed.writer import EncodedEntry, FeedWriter

log = logging.getLogger(__name__)

DEPTH = 4
POLL_S = 0.05


@dataclass(frozen=True)
class Batch:
    entries: list[EncodedEntry]
    confirm_lsn: int  # end LSN of the last transaction complete in or before this batch
    fingerprints: dict[str | bytes, str]  # table schemas first announced by these entries
    chunk_size: int | None = None  # record it once these entries are stored


class Appender(threading.Thread):
    def __init__(self, writer: FeedWriter, client: redis.Redis[bytes], database: str) -> None:
        super().__init__(name="pgsift-feed-appender", daemon=True)
        self._writer = writer
        self._client = client
        self._schemas_key = keys.relation_schemas(database)
        self._chunk_size_key = keys.capture_chunk_size(database)
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=DEPTH)
        self._cancelled = threading.Event()
        self.acked_lsn = 0
        self.error: BaseException | None = None

    def submit(self, batch: Batch) -> None:
        """Queue `batch`, waiting while DEPTH batches are ahead; re-raises a failed append."""
        self._put(batch)

    def _put(self, item: Batch | None) -> None:
        while True:
            self.check()  # a dead appender empties no queue: never wait on it
            try:
                self._queue.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        """Wait until everything submitted is stored (or failed: re-raised)."""
        self._put(None)
        self.join()
        self.check()

    def cancel(self) -> None:
        """Stop without storing what is still queued (the stream broke; it is re-sent)."""
        self._cancelled.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self.join(timeout=30)

    def run(self) -> None:
        while not self._cancelled.is_set():
            batch = self._queue.get()
            if batch is None or self._cancelled.is_set():
                return
            try:
                if batch.entries:
                    result = self._writer.append_encoded(batch.entries)
                    log.debug(
                        "stored %d entries up to %s (%d already there)",
                        result.appended, batch.entries[-1][0], result.skipped,
                    )
                if batch.chunk_size is not None:
                    self._client.set(self._chunk_size_key, batch.chunk_size)
                if batch.fingerprints:
                    # After the entries that announced them: a crash in between
                    # re-detects the change on restart.
                    self._client.hset(self._schemas_key, mapping=batch.fingerprints)
            except BaseException as exc:  # handed to the replication thread
                self.error = exc
                return
            self.acked_lsn = max(self.acked_lsn, batch.confirm_lsn)
