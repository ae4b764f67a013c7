"""The Python client's pending queue on its own (no server): optimistic writes, rebase
on confirmation, refusals, restarts. The end-to-end tests are in test_writes_client.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.python_client import Confirmation, Failure, LocalWrites, PendingQueue, Replica

QUERY = "SELECT id, title, status FROM issues WHERE team_id = $1"
TYPES = {"id": "int8", "title": "text", "status": "text"}


def row(id: int, title: str, status: str = "todo") -> dict[str, object]:
    return {"id": str(id), "title": title, "status": status}


def upsert(id: int, title: str, status: str = "todo") -> dict[str, object]:
    return {"op": "UPDATE", "key": {"id": str(id)}, "row": row(id, title, status)}


@pytest.fixture
def replica(tmp_path: Path) -> Replica:
    replica = Replica(tmp_path / "r.sqlite")
    replica.register("open", QUERY, [1])
    replica.apply("open", [upsert(1, "a"), upsert(2, "b")], cursor="10-0", up_to_date=True,
                  types=TYPES)
    return replica


def create(title: str) -> object:
    def write(writes: LocalWrites) -> None:
        writes.put("open", {"id": f"tmp-{title}", "title": title, "status": "backlog"})
    return write


def test_an_optimistic_write_shows_at_once_and_never_touches_the_server_copy(
    replica: Replica,
) -> None:
    queue = PendingQueue(replica)
    first = queue.add("set_status", {"issue_id": 1, "status": "done"},
                      lambda w: w.patch("open", {"id": 1}, {"status": "done"}))
    second = queue.add("create_issue", {"title": "c"}, create("c"))
    assert (first, second) == (1, 2)
    assert replica.rows("open") == [
        row(1, "a", "done"), row(2, "b"),
        {"id": "tmp-c", "title": "c", "status": "backlog"},
    ]
    assert replica.server_rows("open") == [row(1, "a"), row(2, "b")]
    assert [m.id for m in queue.unsent(10)] == [1, 2]
    assert replica.row("open", {"id": 1}) == row(1, "a", "done")


def test_a_confirmation_releases_a_write_only_in_the_query_whose_message_carries_it(
    replica: Replica,
) -> None:
    queue = PendingQueue(replica)
    replica.register("other", "SELECT 1", [])
    queue.add("create_issue", {"title": "c"}, create("c"))
    queue.acknowledge([{"id": 1, "status": "ok"}])
    # Another query's message of the transaction (at 20-0) comes first: the mutation is
    # settled, but the temporary row stays in `open`, so the issue never blinks out.
    settled = replica.apply("other", [], cursor="20-0", up_to_date=True,
                            confirmed=Confirmation(1, "20-0"))
    assert [(s.id, s.status) for s in settled] == [(1, "ok")]
    assert [r["id"] for r in replica.rows("open")] == ["1", "2", "tmp-c"]
    # The query's own message of the same transaction brings the real row: now only it.
    settled = replica.apply("open", [upsert(3, "c", "backlog")], cursor="20-0",
                            confirmed=Confirmation(1, "20-0"))
    assert settled == []  # reported once
    assert replica.rows("open") == [row(1, "a"), row(2, "b"), row(3, "c", "backlog")]
    assert queue.pending() == []


def test_a_mispredicted_write_goes_with_a_message_that_has_no_changes(
    replica: Replica,
) -> None:
    """The server did something else than predicted (the issue went to another team):
    the query's message of that transaction has no changes, only `confirmed`."""
    queue = PendingQueue(replica)
    queue.add("create_issue", {"title": "c"}, create("c"))
    assert [r["id"] for r in replica.rows("open")] == ["1", "2", "tmp-c"]
    replica.apply("open", [], cursor="30-0", confirmed=Confirmation(1, "30-0"))
    assert replica.rows("open") == replica.server_rows("open")
    assert queue.pending() == []


def test_pending_patches_replay_onto_newer_server_rows_in_order(replica: Replica) -> None:
    queue = PendingQueue(replica)
    queue.add("set_status", {}, lambda w: w.patch("open", {"id": "1"}, {"status": "doing"}))
    queue.add("set_status", {}, lambda w: w.patch("open", {"id": 1}, {"status": "done"}))
    # Someone else renames issue 1; the pending status still shows, on the new title.
    replica.apply("open", [upsert(1, "renamed")], cursor="40-0")
    assert replica.row("open", {"id": 1}) == row(1, "renamed", "done")
    # Issue 2 leaves the query: a pending patch of it does not bring it back.
    queue.add("set_status", {}, lambda w: w.patch("open", {"id": 2}, {"status": "done"}))
    replica.apply("open", [{"op": "DELETE", "key": {"id": "2"}, "row": None}], cursor="41-0")
    assert replica.row("open", {"id": 2}) is None


def test_a_refusal_drops_the_change_at_once_and_is_reported_once(replica: Replica) -> None:
    queue = PendingQueue(replica)
    queue.add("set_status", {}, lambda w: w.patch("open", {"id": 1}, {"status": "done"}))
    queue.add("set_status", {}, lambda w: w.patch("open", {"id": 2}, {"status": "done"}))
    settled = queue.acknowledge([
        {"id": 1, "status": "refused", "message": "not yours"}, {"id": 2, "status": "ok"},
    ])
    assert [(s.id, s.status, s.message) for s in settled] == [(1, "refused", "not yours")]
    assert replica.row("open", {"id": 1}) == row(1, "a")
    assert replica.row("open", {"id": 2}) == row(2, "b", "done")
    settled = replica.apply("open", [upsert(2, "b", "done")], cursor="50-0",
                            confirmed=Confirmation(2, "50-0"))
    assert [(s.id, s.status) for s in settled] == [(2, "ok")]
    assert replica.rows("open") == replica.server_rows("open")
    assert queue.pending() == []


def test_a_refusal_learned_from_the_stream(replica: Replica) -> None:
    queue = PendingQueue(replica)
    replica.register("other", "SELECT 1", [])
    queue.add("create_issue", {"title": "c"}, create("c"))
    settled = replica.apply(
        "other", [], cursor="60-0", up_to_date=True,
        confirmed=Confirmation(1, "60-0", {1: Failure("refused", "no team 9")}),
    )
    assert [(s.status, s.message) for s in settled] == [("refused", "no team 9")]
    assert replica.rows("open") == replica.server_rows("open")
    assert queue.pending() == [] and queue.unsent(10) == []


def test_the_queue_and_its_changes_survive_a_restart(tmp_path: Path, replica: Replica) -> None:
    queue = PendingQueue(replica)
    queue.add("create_issue", {"title": "c"}, create("c"))
    queue.add("set_status", {"issue_id": "2"},
              lambda w: w.patch("open", {"id": 2}, {"status": "done"}))
    queue.acknowledge([{"id": 1, "status": "ok"}])
    client_id = queue.client_id
    visible = replica.rows("open")
    replica.close()

    again = Replica(tmp_path / "r.sqlite")
    queue = PendingQueue(again)
    assert queue.client_id == client_id
    assert again.rows("open") == visible
    assert [m.id for m in queue.unsent(10)] == [2]  # 1 was answered: never sent again
    assert queue.add("set_status", {}, None) == 3


def test_writes_check_their_query_and_key(replica: Replica) -> None:
    queue = PendingQueue(replica)
    with pytest.raises(KeyError):
        queue.add("x", {}, lambda w: w.patch("nope", {"id": 1}, {}))
    with pytest.raises(ValueError, match="key column"):
        queue.add("x", {}, lambda w: w.put("open", {"title": "no id"}))
    assert queue.pending() == []


def test_a_snapshot_confirms_on_its_first_message_and_a_reset_keeps_what_was_confirmed(
    replica: Replica,
) -> None:
    queue = PendingQueue(replica)
    queue.add("create_issue", {"title": "c"}, create("c"))
    queue.add("set_status", {}, lambda w: w.patch("open", {"id": 2}, {"status": "done"}))
    queue.acknowledge_through(2)  # a reconnect's connection_ack: never resent
    assert queue.unsent(10) == []
    replica.reset("open")  # mustRefetch: the copy loads again
    # The snapshot's first message (no cursor yet) holds mutation 1, not 2.
    settled = replica.apply("open", [upsert(1, "a"), upsert(5, "c", "backlog")],
                            confirmed=Confirmation(1, None))
    assert [(s.id, s.status) for s in settled] == [(1, "ok")]
    assert replica.rows("open") == [row(1, "a"), row(5, "c", "backlog")]
    replica.apply("open", [upsert(2, "b")], cursor="80-0", up_to_date=True)
    assert replica.row("open", {"id": 2}) == row(2, "b", "done")  # 2 still pending
    replica.reset("open")
    replica.apply("open", [upsert(1, "a")], cursor="81-0", up_to_date=True)
    assert [r["id"] for r in replica.rows("open")] == ["1"]  # 1 stays confirmed here
    assert [m.id for m in queue.pending()] == [2]
