"""The capture process: leader lock, replication stream -> feed, confirm, retry.

Invariant: the slot's confirmed flush position never passes a transaction
whose entries Redis has not acknowledged. Entries are appended in batches
(one round trip for many small transactions, several chunks of a big one) by
the `Appender` thread while this thread decodes on; once a batch is stored
the slot is confirmed up to the end of the last *complete* transaction in it.
Anything lost in a crash is re-sent by Postgres from the confirmed position
and the entries already stored are skipped by ID.

Failures of Postgres or Redis end the session (Redis out of memory included:
nothing is lost, the slot keeps every change until Redis has room again); the
runner waits (exponential backoff) and starts a new one from the slot's
confirmed position. Losing the lock (or being fenced off) sends the process
back to standby. While streaming, capture writes its heartbeat
(`capture.heartbeat`) and tells `CaptureHealth` what it is doing.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from dataclasses import dataclass
from typing import cast

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import redis

from pgsift.middleware.capture import pgoutput
from pgsift.middleware.capture.appender import Appender, Batch
from pgsift.middleware.capture.changes import RelationCache
from pgsift.middleware.capture.chunker import SchemaTracker, TransactionChunker
from pgsift.middleware.capture.failures import (
    FATAL_PG,
    REDIS_FULL,
    RETRYABLE,
    LockLost,
    StreamLost,
    redis_full,
)
from pgsift.middleware.capture.health import CaptureHealth
from pgsift.middleware.capture.heartbeat import CompletenessClock, Mark
from pgsift.middleware.capture.leader import LeaderLock
from pgsift.middleware.capture.lookup import CatalogLookup
from pgsift.middleware.capture.pacing import FlushPacing
from pgsift.middleware.capture.readiness import CaptureTarget
from pgsift.middleware.errors import CaptureError, FeedError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.entry import FeedEntry, format_lsn
from pgsift.middleware.feed.heartbeat import HeartbeatWriter
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.feed.writer import EncodedEntry, FeedWriter, FencedError, encode
from pgsift.middleware.redis_clients import sync_redis

log = logging.getLogger(__name__)

RowMessage = pgoutput.Insert | pgoutput.Update | pgoutput.Delete

# Flush the pending batch at these sizes even while messages keep coming.
BATCH_ENTRIES = 500
BATCH_CHANGES = 5000
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
STATUS_INTERVAL_S = 5
ACK_POLL_S = 0.01
CLOCK_EVERY = 256


@dataclass(frozen=True)
class CaptureConfig:
    database_url: str
    redis_url: str
    target: CaptureTarget
    max_changes_per_entry: int = 1000
    lock_ttl_s: float = 10.0


class CaptureRunner:
    """Runs capture for one database until `stop` is set."""

    def __init__(
        self, config: CaptureConfig, stop: threading.Event, health: CaptureHealth | None = None
    ) -> None:
        self.config = config
        self.stop = stop
        self.health = health or CaptureHealth(stale_after_s=5.0)
        self.database = keys.database_of(config.database_url)
        self.redis = sync_redis(config.redis_url)
        self.lock = LeaderLock(self.redis, self.database, ttl_s=config.lock_ttl_s)
        self.lookup = CatalogLookup(config.database_url)
        self._delay = BACKOFF_FIRST_S

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    if self.lock.token is None:
                        self.health.standby("waiting for the capture lock")
                        if not self.lock.acquire(self.stop):
                            return
                    self.health.leading()
                    session = _Session(self)
                    session.run()
                    return
                except (LockLost, FencedError) as exc:
                    log.warning("%s; back to standby", exc)
                    self.lock.token = None
                    continue
                except RETRYABLE as exc:
                    if not self._retry(f"capture interrupted: {type(exc).__name__}: "
                                       f"{str(exc).strip()}"):
                        return
                except (FeedError, redis.ResponseError) as exc:
                    if not redis_full(exc):
                        raise
                    if not self._retry(REDIS_FULL):
                        return
        finally:
            self._shutdown()

    def _retry(self, reason: str) -> bool:
        """Say why, wait the backoff; False when told to stop meanwhile."""
        log.warning("%s; retrying in %.1f s", reason, self._delay)
        self.health.retrying(reason)
        if self.stop.wait(self._delay):
            return False
        self._delay = min(BACKOFF_MAX_S, self._delay * 2)
        return True

    def progressed(self) -> None:
        """A session stored something: the next failure starts backing off afresh."""
        self._delay = BACKOFF_FIRST_S

    def _shutdown(self) -> None:
        with contextlib.suppress(redis.RedisError):  # it expires on its own
            self.lock.release()
        self.lookup.close()
        self.redis.close()


def _with_utc(database_url: str) -> str:
    """The URL's `options` plus TimeZone=UTC: timestamptz values come as text in the
    session's time zone, and UTC (what pgsift hands on) parses without a conversion."""
    options = psycopg2.extensions.parse_dsn(database_url).get("options", "")
    return f"{options} -c TimeZone=UTC".strip()


class _Session:
    """One replication connection, from start_replication until it fails or stops."""

    def __init__(self, runner: CaptureRunner) -> None:
        self.runner = runner
        config = runner.config
        token = runner.lock.token
        if token is None:
            raise LockLost("no lock")
        writer = FeedWriter(runner.redis, runner.database, token)
        self.heartbeat = HeartbeatWriter(runner.redis, runner.database, token)
        seen = runner.redis.hgetall(keys.relation_schemas(runner.database))
        self.appender = Appender(writer, runner.redis, runner.database)
        self.schemas = SchemaTracker({k.decode(): v.decode() for k, v in seen.items()})
        self.relations = RelationCache(runner.lookup.type_name, runner.lookup.primary_key)
        self.chunk_size = config.max_changes_per_entry
        self.chunk_size_to_record: int | None = None  # recorded after the next batch
        self.old_chunk_size_until = self._resume_chunk_size()
        self.assembler = TransactionChunker(
            self.chunk_size if self.old_chunk_size_until is None else self.stored_chunk_size
        )
        self.pending: list[EncodedEntry] = []
        self.pending_changes = 0
        self.flush_due = 0.0  # when the pending entries are stored at a pause (`pacing`)
        self.pacing = FlushPacing()
        self.pending_lsn = 0  # the transaction of the last pending entry
        self.completed_lsn = 0  # end LSN of the last transaction fully handed to `pending`
        self.submitted_lsn = 0  # ... handed to the appender
        self.confirmed_lsn = 0  # ... stored and confirmed to the slot
        self.renew_every = max(0.05, config.lock_ttl_s / 3)
        self.next_renew = time.monotonic() + self.renew_every

    def _resume_chunk_size(self) -> int | None:
        """Up to which LSN transactions must be cut with the stored chunk size, if ever.

        Transactions up to the newest stored one may be re-sent; cut another
        way, their chunk IDs would differ from the stored ones and a finer cut
        would append chunks twice. A changed setting applies after them.
        """
        runner = self.runner
        key = keys.capture_chunk_size(runner.database)
        stored = runner.redis.get(key)
        self.stored_chunk_size = int(stored) if stored is not None else self.chunk_size
        if self.stored_chunk_size == self.chunk_size:
            if stored is None:
                runner.redis.set(key, self.chunk_size)
            return None
        newest = FeedReader(runner.redis, runner.database).last_id()
        if newest is None:
            runner.redis.set(key, self.chunk_size)
            return None
        lsn = newest.lsn
        log.warning(
            "transactions up to %s were cut %s changes a chunk: re-sent ones are cut so "
            "again; capture_max_changes_per_entry = %s applies after them",
            format_lsn(lsn), self.stored_chunk_size, self.chunk_size,
        )
        return lsn

    def run(self) -> None:
        runner = self.runner
        conn = psycopg2.connect(
            runner.config.database_url,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            application_name="pgsift capture",
            options=_with_utc(runner.config.database_url),
        )
        self.clock = CompletenessClock(runner.lookup, server_version=conn.server_version)
        try:
            cursor = conn.cursor()
            target = runner.config.target
            options = {"proto_version": "1", "publication_names": target.publication}
            if self.clock.markers:
                options["messages"] = "true"
            self._renew()  # a leader that was paused finds out here, before streaming
            try:
                cursor.start_replication(
                    slot_name=target.slot,
                    decode=False,
                    options=options,
                    status_interval=STATUS_INTERVAL_S,
                )
            except psycopg2.errors.ObjectInUse:
                # If we still hold the lock, whoever streams from the slot is a stale
                # leader (paused, partitioned) that Postgres would only drop after
                # wal_sender_timeout. It could not append anyway: fencing.
                self._renew()
                pid = runner.lookup.terminate_slot_holder(target.slot)
                log.warning("slot %s was held by a stale capture (pid %s): ended it",
                            target.slot, pid)
                raise
            log.info(
                "capturing %s (slot %s, publication %s) into %s",
                runner.database, target.slot, target.publication, keys.feed_stream(runner.database),
            )
            self.appender.start()
            self._loop(cursor)
            self._flush()
            self.appender.drain()
            self._confirm(cursor)
        except psycopg2.Error as exc:
            # A broken stream surfaces as odd errors ("no COPY in progress").
            if isinstance(exc, FATAL_PG) and not conn.closed:
                raise CaptureError(f"replication failed: {exc}") from exc
            raise StreamLost(f"{type(exc).__name__}: {str(exc).strip()}") from exc
        finally:
            if self.appender.is_alive():
                self.appender.cancel()
            conn.close()

    def _loop(self, cursor: psycopg2.extras.ReplicationCursor) -> None:
        stop = self.runner.stop
        read, decode, handle = cursor.read_message, pgoutput.decode, self._handle
        while not stop.is_set():
            if time.monotonic() >= self.next_renew:
                self._renew()
            self.clock.tick()
            # Up to CLOCK_EVERY messages between checks of the clock and `stop`:
            # this loop runs ~10^5 times a second.
            for _ in range(CLOCK_EVERY):
                message = read()
                if message is None:
                    self._idle(cursor)
                    break
                handle(decode(message.payload))
                if len(self.pending) >= BATCH_ENTRIES or self.pending_changes >= BATCH_CHANGES:
                    self._flush()
                    self._confirm(cursor)

    def _idle(self, cursor: psycopg2.extras.ReplicationCursor) -> None:
        """Nothing to read: store what is pending (once it is due: `pacing`), confirm,
        wait for the server a while."""
        early = self.flush_due - time.monotonic()
        if self.pending and early > 0:
            select.select([cursor.connection], [], [], early)
            return
        self._flush()
        if not self.assembler.in_transaction:
            self.clock.drained(self.completed_lsn)
        self._confirm(cursor)
        # Wake up soon while a batch is being stored, to confirm it promptly.
        waiting = self.appender.acked_lsn < self.submitted_lsn
        timeout = ACK_POLL_S if waiting else self.next_renew - time.monotonic()
        select.select([cursor.connection], [], [], max(0.0, min(1.0, timeout)))

    def _renew(self) -> None:
        if not self.runner.lock.renew():
            raise LockLost("the lock expired or another capture holds it")
        self.next_renew = time.monotonic() + self.renew_every

    def _handle(self, message: pgoutput.Message) -> None:
        assembler = self.assembler
        kind = type(message)  # exact types, most frequent first: this runs per message
        if kind is pgoutput.Insert or kind is pgoutput.Update or kind is pgoutput.Delete:
            ready = assembler.add(self.relations.to_change(cast(RowMessage, message)))
            if ready is not None:
                self._queue(ready)
        elif isinstance(message, pgoutput.Begin):
            assembler.begin(message.final_lsn, message.xid, message.commit_time)
        elif isinstance(message, pgoutput.Commit):
            final = assembler.commit()
            if final is not None:
                self._queue(final)
            self.completed_lsn = message.end_lsn
            if self.old_chunk_size_until is not None and (
                message.commit_lsn >= self.old_chunk_size_until
            ):
                # The last transaction cut the old way: store it alone, then record
                # the new size, so the record always matches the newest entries.
                assembler.max_changes = self.chunk_size_to_record = self.chunk_size
                self.old_chunk_size_until = None
                self._flush()
        elif isinstance(message, pgoutput.Relation):
            schema = self.relations.update(message).schema
            if self.schemas.observe(schema.table, schema.fingerprint):
                assembler.schema_changed(schema.table)
        elif isinstance(message, pgoutput.Truncate):
            for change in self.relations.to_changes(message):
                ready = assembler.add(change)
                if ready is not None:
                    self._queue(ready)
        elif isinstance(message, pgoutput.TypeMessage):
            # Sent when a type is (re)defined: resolve its name afresh next time.
            self.runner.lookup.forget_type(message.oid)
        elif isinstance(message, pgoutput.LogicalMessage):
            self.clock.received(message, self.completed_lsn)
        # Origin messages and other logical decoding messages carry nothing for the feed.

    def _queue(self, entry: FeedEntry) -> None:
        # Encoded here, not on the appender thread: that one then only waits on
        # Redis, without taking the GIL from this thread for long.
        if not self.pending:
            in_flight = self.appender.acked_lsn < self.submitted_lsn
            self.flush_due = self.pacing.due(time.monotonic(), entry.lsn, in_flight)
        self.pending_lsn = entry.lsn
        self.pending.append(encode(entry))
        self.pending_changes += len(entry.changes)

    def _flush(self) -> None:
        """Hand the pending entries to the appender (waits while it is DEPTH batches behind)."""
        fingerprints: dict[str | bytes, str] = {}
        if not self.assembler.in_transaction:
            # Only between transactions: the entries announcing these are all in
            # this batch or an earlier one.
            fingerprints.update(self.schemas.take_unsaved())
        chunk_size, self.chunk_size_to_record = self.chunk_size_to_record, None
        if (not self.pending and not fingerprints and chunk_size is None
                and self.completed_lsn <= self.submitted_lsn):
            return
        self.appender.submit(Batch(self.pending, self.completed_lsn, fingerprints, chunk_size))
        self.pacing.stored(time.monotonic(), self.pending_lsn if self.pending else None)
        self.submitted_lsn = max(self.submitted_lsn, self.completed_lsn)
        self.pending, self.pending_changes = [], 0

    def _confirm(self, cursor: psycopg2.extras.ReplicationCursor) -> None:
        """Confirm the slot up to the last complete transaction Redis has stored."""
        self.appender.check()
        acked = self.appender.acked_lsn
        if acked > self.confirmed_lsn:
            # Sent at once: a slot confirmed late makes a restart re-send (and Redis
            # skip) everything since, and holds WAL on the server meanwhile.
            cursor.send_feedback(flush_lsn=acked, force=True)  # type: ignore[no-untyped-call]
            self.confirmed_lsn = acked
            self.runner.progressed()
            log.debug("confirmed up to %s", format_lsn(acked))
        mark = self.clock.complete(acked)
        if mark is not None:
            self._beat(cursor, mark)

    def _beat(self, cursor: psycopg2.extras.ReplicationCursor, mark: Mark) -> None:
        """The feed is complete up to `mark`: write the heartbeat, move the slot past it."""
        if mark.lsn is not None and mark.lsn > self.confirmed_lsn:
            # Everything before the marker is stored: nothing before it must be re-sent.
            cursor.send_feedback(flush_lsn=mark.lsn, force=True)  # type: ignore[no-untyped-call]
            self.confirmed_lsn = mark.lsn
        lag = max(0.0, time.time() - mark.at)
        self.heartbeat.beat(self.confirmed_lsn, lag)
        self.runner.health.beat(self.confirmed_lsn, lag)
