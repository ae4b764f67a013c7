"""Feed retention never passes a dump in use; stale dumps go, served ones stay."""

from __future__ import annotations

import dataclasses
import time

import pytest

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.bootstrap.finder import fresh_dump
from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.dumps.format import BodyWriter, DumpHeader
from pgsift.middleware.dumps.leases import claim_for_drop, lease, still_servable
from pgsift.middleware.dumps.store import DumpInfo
from pgsift.middleware.feed import keys as feed_keys
from pgsift.middleware.feed.retention import FeedRetention
from pgsift.workers.context import JobContext
from pgsift.workers.trim import drop_stale_in, trim_feed_in
from tests.workers.feeds import append


def publish(context: JobContext, shape: str, position: str, built_at: float) -> DumpInfo:
    header = DumpHeader(shape_key=shape, table="public.t", columns=("id",), types=("int8",),
                        schema_hash="h", snapshot=Snapshot(1, 1), feed_position=position,
                        built_at=built_at)
    writer = context.store.begin(header)
    body = BodyWriter(header)
    for chunk in body.finish():
        writer.write(chunk)
    return writer.publish(body.trailer(built_at))


def retention(context: JobContext, **changes: float) -> JobContext:
    return dataclasses.replace(context, settings=context.settings.replace(**changes))


def test_trim_by_length_and_age_stops_at_the_oldest_dump(context: JobContext) -> None:
    now = time.time()
    ids = [append(context.client, context.database, 100 + 10 * n, at=now - 1000 + n)
           for n in range(100)]
    # By length: keep 10, but a dump sits at entry 40. The cut rounds down to
    # the start of a transaction, so the dump's own entry stays too.
    publish(context, "s", ids[40], now)
    result = trim_feed_in(retention(context, feed_max_len=10))
    assert result.first_id == ids[40] and result.trimmed == 40 and result.floor == ids[40]
    # Without the dump, only the newest 10 stay.
    for info in context.store.all_dumps():
        context.store.delete(info)
    assert trim_feed_in(retention(context, feed_max_len=10)).first_id == ids[90]
    # By age: entries committed more than 5s ago go (the last 5 are younger).
    # The clock is the test's: under load, real seconds pass between `now` and the trim.
    result = trim_feed_in(
        retention(context, feed_max_len=0, feed_max_age_s=1000 - 95 + 0.5), now=now
    )
    assert result.first_id == ids[95]


def test_a_transaction_split_in_chunks_is_never_cut_in_half(context: JobContext) -> None:
    for lsn in (10, 20):
        for chunk in range(3):
            append(context.client, context.database, lsn, chunk=chunk)
    assert trim_feed_in(retention(context, feed_max_len=2)).first_id == "20-0"


def test_nothing_to_trim(context: JobContext) -> None:
    assert trim_feed_in(context).trimmed == 0
    append(context.client, context.database, 5, at=time.time())
    assert trim_feed_in(context).first_id == "5-0"


def test_trim_records_the_last_entry_removed(context: JobContext) -> None:
    ids = [append(context.client, context.database, 10 * n) for n in range(1, 6)]
    marker = feed_keys.feed_trimmed(context.database)
    assert trim_feed_in(retention(context, feed_max_len=2)).trimmed == 3
    assert context.client.get(marker) == ids[2].encode()
    assert trim_feed_in(retention(context, feed_max_len=2)).trimmed == 0
    assert context.client.get(marker) == ids[2].encode()


def test_a_dump_built_on_an_empty_feed_is_served_until_trimmed_past(
    context: JobContext,
) -> None:
    layout = ShapeLayout("s", "public.t", ("id",), ("int8",), "h")
    dump = publish(context, "s", "0-0", time.time())
    feed = FeedRetention.for_database(context.client, context.database)

    def served() -> str | None:
        info = fresh_dump(context.store, layout, max_age_s=3600, feed=feed.bounds())
        return None if info is None else info.dump_id

    for lsn in (10, 20, 30):
        append(context.client, context.database, lsn)
    assert served() == dump.dump_id  # nothing after 0-0 is gone
    assert trim_feed_in(retention(context, feed_max_len=1)).trimmed == 0  # the dump holds it
    assert served() == dump.dump_id
    feed.trim("20-0")  # past it (as if by another trimmer): its cursor would miss 10
    assert served() is None


def test_drop_stale_dumps_keeps_the_newest_and_the_served(context: JobContext) -> None:
    now = time.time()
    old = publish(context, "a", "1-0", now - 30)
    served = publish(context, "a", "2-0", now - 20)
    newest = publish(context, "a", "3-0", now - 10)
    expired = publish(context, "b", "4-0", now - 5000)
    lease(context.client, context.database, served.dump_id)
    dropped = drop_stale_in(retention(context, dumps_retention_s=3600))
    assert sorted(dropped) == sorted([old.dump_id, expired.dump_id])
    assert {i.dump_id for i in context.store.all_dumps()} == {served.dump_id, newest.dump_id}


def test_a_dump_leased_while_the_drop_runs_is_kept(
    context: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    old = publish(context, "a", "1-0", now - 30)
    publish(context, "a", "2-0", now - 20)
    listed = context.store.all_dumps

    def list_then_lease() -> list[DumpInfo]:
        infos = listed()
        # A gateway chooses and leases `old` after the drop read the leases.
        lease(context.client, context.database, old.dump_id)
        return infos

    monkeypatch.setattr(context.store, "all_dumps", list_then_lease)
    assert drop_stale_in(context) == []
    assert old.dump_id in {i.dump_id for i in listed()}


def test_a_dump_claimed_for_dropping_is_not_served(context: JobContext) -> None:
    now = time.time()
    old = publish(context, "a", "1-0", now - 30)
    publish(context, "a", "2-0", now - 20)
    assert claim_for_drop(context.client, context.database, old.dump_id)
    # Claimed, not yet deleted: leasing it now does not make it servable.
    lease(context.client, context.database, old.dump_id)
    assert not still_servable(context.client, context.database, context.store, old)
    context.store.delete(old)
    lease(context.client, context.database, "leased-one")
    assert not claim_for_drop(context.client, context.database, "leased-one")
