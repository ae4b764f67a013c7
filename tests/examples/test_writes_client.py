"""The Python client writing through the gateway: optimistic changes, rebase on
confirmation, refusals, an offline queue across a restart, a lost answer.

Real servers: the seeded issue tracker, `pgsift capture` and the gateway (the
example's config, with its mutators) as subprocesses; Postgres is the oracle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from examples.issue_tracker import issue_token
from examples.python_client import LocalWrites, Replica, Settled, SyncClient, SyncError
from pgsift.middleware.embedded.ports import free_port
from tests.examples.stack import (
    EXAMPLE_CONFIG,
    WAIT_S,
    expected_rows,
    gateway,
    key_text,
    seed_app,
)
from tests.middleware.capture.processes import capturing

OPEN = (
    "SELECT id, team_id, title, status, priority FROM issues"
    " WHERE team_id = $1 AND status NOT IN ('done', 'canceled')"
)


class Stack:
    def __init__(self, base_url: str, token: str, team: int, other_team: int) -> None:
        self.base_url, self.token, self.team, self.other_team = (
            base_url, token, team, other_team
        )


@pytest.fixture
def stack(database_url: str, redis_url: str) -> Iterator[Stack]:
    user, other = seed_app(database_url, issues=300, seed=11)
    with capturing(database_url, redis_url, config=EXAMPLE_CONFIG), gateway(
        database_url, redis_url
    ) as base_url:
        yield Stack(base_url, issue_token(user), user.team_ids[0], other)


@asynccontextmanager
async def running(
    stack: Stack, path: Path, *, base_url: str | None = None, **options: Any
) -> AsyncIterator[SyncClient]:
    """A writing client on the replica at `path`, running until the block ends."""
    client = SyncClient(base_url or stack.base_url, Replica(path), token=stack.token,
                        writes=True, retry_delay=0.05, max_retry_delay=0.5, **options)
    client.add("open", OPEN, [stack.team])
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        client.stop()
        try:
            await asyncio.wait_for(task, WAIT_S)
        finally:
            await client.aclose()
            client.replica.close()


async def until(check: Any, what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def converged(client: SyncClient, database_url: str, team: int) -> bool:
    """Nothing pending, and the copy (as the app sees it) is what Postgres returns."""
    assert client.queue is not None
    if client.queue.pending():
        return False
    visible = {key_text({"id": row["id"]}): row for row in client.replica.rows("open")}
    return visible == expected_rows(database_url, OPEN, [team])


def create(title: str, team: int) -> tuple[dict[str, Any], Any]:
    def optimistic(writes: LocalWrites) -> None:
        writes.put("open", {"id": f"tmp-{title}", "team_id": team, "title": title,
                            "status": "backlog", "priority": 0})
    return {"team_id": team, "title": title}, optimistic


def titles(client: SyncClient) -> list[str]:
    return sorted(row["title"] for row in client.replica.rows("open"))


async def test_optimistic_changes_show_at_once_then_give_way_to_the_server_rows(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    async with running(stack, tmp_path / "r.sqlite") as client:
        await client.wait_up_to_date(timeout=WAIT_S)
        some = client.replica.rows("open")[0]
        args, optimistic = create("Optimistic issue", stack.team)
        created = client.mutate("create_issue", args, optimistic=optimistic)
        moved = client.mutate(
            "set_status", {"issue_id": some["id"], "status": "in_review"},
            optimistic=lambda w: w.patch("open", {"id": some["id"]}, {"status": "in_review"}),
        )
        # At once, before any answer: the new issue and the new status are in the copy.
        assert "Optimistic issue" in titles(client)
        assert client.replica.row("open", {"id": some["id"]})["status"] == "in_review"
        assert client.replica.server_rows("open") != client.replica.rows("open")
        assert (await client.settled(created, timeout=WAIT_S)).status == "ok"
        assert (await client.settled(moved, timeout=WAIT_S)).status == "ok"
        await until(lambda: converged(client, database_url, stack.team), "converged")
        # The temporary row gave way to the real one: the title is there once.
        assert titles(client).count("Optimistic issue") == 1
        assert not any(str(row["id"]).startswith("tmp-") for row in client.replica.rows("open"))
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM issues WHERE title = 'Optimistic issue'"
        ).fetchone() == (1,)


async def test_a_refused_mutation_drops_its_change_and_reports_why(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    reported: list[Settled] = []
    async with running(stack, tmp_path / "r.sqlite", on_outcome=reported.append) as client:
        await client.wait_up_to_date(timeout=WAIT_S)
        before = client.replica.rows("open")
        args, optimistic = create("Not my team", stack.team)
        refused = client.mutate(
            "create_issue", {**args, "team_id": stack.other_team}, optimistic=optimistic
        )
        assert "Not my team" in titles(client)
        outcome = await client.settled(refused, timeout=WAIT_S)
        assert (outcome.status, outcome.message) == (
            "refused", f"you are not a member of team {stack.other_team}"
        )
        assert client.replica.rows("open") == before
        await until(lambda: converged(client, database_url, stack.team), "converged")
    assert [(r.id, r.status) for r in reported] == [(refused, "refused")]


async def test_offline_mutations_wait_in_the_replica_and_go_out_once_after_a_restart(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "r.sqlite"
    async with running(stack, path) as client:  # a first session, to have a copy
        await client.wait_up_to_date(timeout=WAIT_S)
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with running(stack, path, base_url=nowhere) as client:
        for i in range(3):
            args, optimistic = create(f"Offline {i}", stack.team)
            client.mutate("create_issue", args, optimistic=optimistic)
        await asyncio.sleep(0.5)  # it keeps trying; nothing gets through
        assert [m.id for m in client.queue.unsent(10)] == [1, 2, 3]  # type: ignore[union-attr]
    # The process is gone; the queue and the optimistic rows are in the file.
    replica = Replica(path)
    assert [t for t in sorted(r["title"] for r in replica.rows("open")) if "Offline" in t] == [
        "Offline 0", "Offline 1", "Offline 2"
    ]
    replica.close()
    async with running(stack, path) as client:
        await until(lambda: converged(client, database_url, stack.team), "converged")
        assert [t for t in titles(client) if "Offline" in t] == [
            "Offline 0", "Offline 1", "Offline 2"
        ]
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT title, count(*) FROM issues WHERE title LIKE 'Offline %' GROUP BY 1 ORDER BY 1"
        ).fetchall() == [("Offline 0", 1), ("Offline 1", 1), ("Offline 2", 1)]


async def test_an_answer_lost_after_the_commit_is_not_run_twice(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    """The server commits, the client dies before it records the answer; the restarted
    client sends the same mutations again: they come back `duplicate`, run once."""
    path = tmp_path / "r.sqlite"
    client = SyncClient(stack.base_url, Replica(path), token=stack.token, writes=True)
    client.add("open", OPEN, [stack.team])
    assert client.queue is not None

    def crash(results: Any) -> list[Settled]:
        raise SyncError("the client died before recording the answer")

    client.queue.acknowledge = crash  # type: ignore[method-assign]
    for i in range(2):
        args, optimistic = create(f"Once {i}", stack.team)
        client.mutate("create_issue", args, optimistic=optimistic)
    try:
        with pytest.raises(SyncError, match="died"):
            await asyncio.wait_for(client.run(), WAIT_S)
    finally:
        await client.aclose()
        client.replica.close()
    with psycopg.connect(database_url) as conn:  # the server did run them
        assert conn.execute(
            "SELECT count(*) FROM issues WHERE title LIKE 'Once %'"
        ).fetchone() == (2,)
    async with running(stack, path) as client:
        await until(lambda: converged(client, database_url, stack.team), "converged")
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT title, count(*) FROM issues WHERE title LIKE 'Once %' GROUP BY 1 ORDER BY 1"
        ).fetchall() == [("Once 0", 1), ("Once 1", 1)]



async def test_a_refusal_whose_answer_was_lost_is_learned_from_a_fresh_snapshot(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    """The mutate answer is lost and the copy is reset: the client learns its mutations'
    outcomes only from the snapshot's one confirmation (of the later, ok mutation). Its
    `failed` names the refused one, which is reported refused and its change goes."""
    path = tmp_path / "r.sqlite"
    async with running(stack, path) as client:  # a first session, to have a copy
        await client.wait_up_to_date(timeout=WAIT_S)
    offline = SyncClient(stack.base_url, Replica(path), token=stack.token, writes=True)
    offline.add("open", OPEN, [stack.team])
    assert offline.queue is not None
    args, optimistic = create("Not my team", stack.team)
    refused = offline.mutate(
        "create_issue", {**args, "team_id": stack.other_team}, optimistic=optimistic
    )
    args, optimistic = create("Mine", stack.team)
    kept = offline.mutate("create_issue", args, optimistic=optimistic)
    # Sent, but the answer never reaches the queue.
    body = {"clientId": offline.queue.client_id, "mutations": [
        {"id": m.id, "name": m.name, "args": m.args} for m in offline.queue.unsent(10)]}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=WAIT_S) as http:
        answer = await http.post("/v1/mutate", json=body,
                                 headers={"authorization": f"Bearer {stack.token}"})
    assert [r["status"] for r in answer.json()["results"]] == ["refused", "ok"]
    offline.replica.reset("open")  # the feed's versions of each mutation are not replayed
    await offline.aclose()
    offline.replica.close()
    reported: list[Settled] = []
    async with running(stack, path, on_outcome=reported.append) as client:
        outcome = await client.settled(refused, timeout=WAIT_S)
        assert (outcome.status, outcome.message) == (
            "refused", f"you are not a member of team {stack.other_team}"
        )
        assert (await client.settled(kept, timeout=WAIT_S)).status == "ok"
        await until(lambda: converged(client, database_url, stack.team), "converged")
        assert "Not my team" not in titles(client) and titles(client).count("Mine") == 1
    assert sorted((r.id, r.status) for r in reported) == [(refused, "refused"), (kept, "ok")]
