"""Routing whole transactions: the listeners of one shape share one result and its messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.reassembly import TxRouter
from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change

CATALOG = Catalog.from_dict(
    {"items": {"columns": {"id": "int8", "bucket": "int4", "value": "int8"},
               "primary_key": ["id"]}}
)  # fmt: skip
AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, eq=False)
class Listener:
    shape: Shape


def bucket(number: int) -> Shape:
    return Shape.parse(
        "SELECT id, bucket, value FROM items WHERE bucket = $1", params=[number], catalog=CATALOG
    )


def update(row_id: int, old_bucket: int, new_bucket: int, value: int) -> Change:
    old = {"id": row_id, "bucket": old_bucket, "value": value - 1}
    new = {"id": row_id, "bucket": new_bucket, "value": value}
    return Change("public.items", "update", {"id": row_id}, new, old)


def test_listeners_of_one_shape_share_the_transaction_and_its_messages() -> None:
    router: TxRouter[Listener] = TxRouter()
    one, also_one, two = Listener(bucket(1)), Listener(bucket(1)), Listener(bucket(2))
    for listener in (one, also_one, two):
        router.add(listener.shape, listener)
    changes = (update(10, 1, 1, 5), update(11, 1, 2, 7))  # the second moves 11 to bucket 2
    routed = router.route(FeedEntry(lsn=100, xid=7, commit_time=AT, changes=changes))
    assert routed is not None
    assert routed[one] is routed[also_one] and routed[two] is not routed[one]
    assert [(c.op, c.key) for c in routed[one].changes] == [
        ("UPDATE", {"id": "10"}), ("DELETE", {"id": "11"})
    ]
    assert [(c.op, c.row) for c in routed[two].changes] == [
        ("INSERT", {"id": "11", "bucket": 2, "value": "7"})
    ]
    messages = routed[one].live_messages(1000)
    assert routed[also_one].live_messages(1000) is messages
    assert [m.cursor for m in messages] == ["100-0"] and messages[0].up_to_date


def test_a_shared_result_is_cut_like_a_single_one() -> None:
    router: TxRouter[Listener] = TxRouter(max_changes=2)
    one, also_one = Listener(bucket(1)), Listener(bucket(1))
    router.add(one.shape, one)
    router.add(also_one.shape, also_one)
    changes = tuple(update(n, 1, 1, n) for n in range(3))
    routed = router.route(FeedEntry(lsn=5, xid=1, commit_time=AT, changes=changes))
    assert routed is not None
    assert routed[one].refetch and routed[one].changes == () and routed[also_one] is routed[one]
    assert router.routed_changes == 6  # counted per listener, applied once per shape
