"""Exactly once, end to end: the Python client writing through real gateways that get
killed (SIGKILL) between a commit and its answer, clients that reconnect and restart,
duplicate submits, a capture failover, refused and raising mutators, and a random mix of optimistic
mutations from several clients with the app writing directly to Postgres meanwhile —
after which every client's replica, with nothing pending, equals Postgres.

Real servers: the seeded issue tracker, `pgsift capture` and the gateway as
subprocesses; Postgres is the oracle.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from examples.issue_tracker import Writer, issue_token
from examples.python_client import Settled, SyncClient
from pgsift.middleware.mutations import ledger as ledger_sql
from tests.examples.stack import EXAMPLE_CONFIG, WAIT_S, seed_app
from tests.examples.test_writes_client import (
    Stack,
    converged,
    create,
    running,
    titles,
    until,
)
from tests.examples.writes_stack import GatewayProcess, Proxy, config_with_explode
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.test_failover_soak import Captures


class Killable(Stack):
    def __init__(self, database_url: str, redis_url: str, config: Path, *args: Any) -> None:
        super().__init__(*args)
        self.database_url, self.redis_url, self.config = database_url, redis_url, config


@pytest.fixture
def killable(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Killable]:
    """Capture running; the test starts (and kills) its gateways itself."""
    user, other = seed_app(database_url, issues=300, seed=13)
    with capturing(database_url, redis_url, config=EXAMPLE_CONFIG):
        yield Killable(database_url, redis_url, config_with_explode(tmp_path), "",
                       issue_token(user), user.team_ids[0], other)


CREATED_LOG = """
CREATE TABLE created_log (seq bigserial PRIMARY KEY, title text NOT NULL);
CREATE FUNCTION log_created() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO created_log (title) VALUES (NEW.title); RETURN NEW; END $$;
CREATE TRIGGER log_created AFTER INSERT ON issues FOR EACH ROW EXECUTE FUNCTION log_created();
"""


def ledger(database_url: str, client_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT last_mutation_id FROM pgsift.clients WHERE client_id = %s",
                           [client_id]).fetchone()
    return 0 if row is None else int(row[0])


def title_counts(database_url: str, pattern: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {str(title): int(count) for title, count in conn.execute(
            "SELECT title, count(*) FROM issues WHERE title LIKE %s GROUP BY 1", [pattern])}


async def test_a_gateway_killed_between_commit_and_answer(
    killable: Killable, tmp_path: Path
) -> None:
    """The mutations commit, the gateway dies (SIGKILL) before its answer reaches the
    client, and its websocket (whose confirmations were held too) drops with it; the
    client resends to the next gateway (answered `duplicate`) and resumes its
    subscription there, whose catch-up confirms them: each ran once, the copy converges."""
    first = GatewayProcess(killable.database_url, killable.redis_url, killable.config)
    second: GatewayProcess | None = None
    try:
        async with Proxy(first.port) as proxy:
            killable.base_url = proxy.base_url
            async with running(killable, tmp_path / "r.sqlite") as client:
                await client.wait_up_to_date(timeout=WAIT_S)
                assert client.queue is not None
                proxy.hold_answers = True
                for i in range(5):
                    args, optimistic = create(f"Killed {i}", killable.team)
                    client.mutate("create_issue", args, optimistic=optimistic)
                async with asyncio.timeout(WAIT_S):
                    await proxy.held.wait()
                await until(lambda: ledger(killable.database_url, client.queue.client_id) == 5,
                            "the five mutations committed")
                assert title_counts(killable.database_url, "Killed %") == {
                    f"Killed {i}": 1 for i in range(5)}
                # Neither the answer nor the stream's confirmations reached the client.
                assert [m.acked for m in client.queue.pending()] == [False] * 5
                first.kill()
                second = GatewayProcess(killable.database_url, killable.redis_url,
                                        killable.config)
                proxy.target_port, proxy.hold_answers = second.port, False
                await until(lambda: converged(client, killable.database_url, killable.team),
                            "converged through the second gateway")
                assert [t for t in titles(client) if t.startswith("Killed")] == [
                    f"Killed {i}" for i in range(5)]
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert title_counts(killable.database_url, "Killed %") == {f"Killed {i}": 1 for i in range(5)}


async def test_refused_and_raising_mutators_drop_their_changes(
    killable: Killable, tmp_path: Path
) -> None:
    gateway = GatewayProcess(killable.database_url, killable.redis_url, killable.config)
    reported: list[Settled] = []
    try:
        killable.base_url = f"http://127.0.0.1:{gateway.port}"
        async with running(killable, tmp_path / "r.sqlite", on_outcome=reported.append) as client:
            await client.wait_up_to_date(timeout=WAIT_S)
            issue = client.replica.rows("open")[0]
            key = {"id": issue["id"]}
            exploded = client.mutate("explode", {"issue_id": issue["id"]},
                                     optimistic=lambda w: w.patch("open", key, {"title": "boom"}))
            refused = client.mutate("set_status", {"issue_id": issue["id"], "status": "bogus"},
                                    optimistic=lambda w: w.patch("open", key, {"status": "bogus"}))
            fine = client.mutate("set_status", {"issue_id": issue["id"], "status": "in_review"},
                                 optimistic=lambda w: w.patch("open", key,
                                                              {"status": "in_review"}))
            assert client.replica.row("open", key)["title"] == "boom"  # optimistic, at once
            outcomes = [await client.settled(i, timeout=WAIT_S) for i in (exploded, refused, fine)]
            assert [(o.status, o.message) for o in outcomes] == [
                ("error", "the mutator failed; the gateway's log has the details"),
                ("refused", "status must be one of backlog, todo, in_progress, in_review, "
                            "done, canceled"),
                ("ok", None),
            ]
            await until(lambda: converged(client, killable.database_url, killable.team),
                        "converged")
            assert client.replica.row("open", key) == {**issue, "status": "in_review"}
    finally:
        gateway.stop()
    assert sorted(r.id for r in reported) == [exploded, refused, fine]
    assert title_counts(killable.database_url, "exploded") == {}


async def test_a_random_mix_of_clients_and_direct_writes_converges_on_postgres(
    killable: Killable, tmp_path: Path
) -> None:
    """Three clients mutate at random (creates, status changes, refused ones), restart now
    and then (a reconnect that resends what has no answer), and submit duplicates,
    while the app writes to Postgres directly; at the end each client's replica, with
    nothing pending, is Postgres's answer, and each create ran once, in client order."""
    with psycopg.connect(killable.database_url, autocommit=True) as conn:
        # The app renames and deletes issues too: the oracle of "ran once, in order" is a
        # log of every insert as it happened.
        conn.execute(CREATED_LOG)
    gateway = GatewayProcess(killable.database_url, killable.redis_url, killable.config)
    killable.base_url = f"http://127.0.0.1:{gateway.port}"
    rng = random.Random(5)
    sent: dict[int, list[dict[str, Any]]] = {n: [] for n in range(3)}
    created: dict[int, list[str]] = {n: [] for n in range(3)}
    stop_writer = threading.Event()

    def app_writes() -> None:
        with Writer(killable.database_url, 77) as writer:
            while not stop_writer.is_set():
                writer.run(rate=50.0, steps=20)

    async def one_client(n: int) -> str:
        path = tmp_path / f"client{n}.sqlite"
        for session in range(3):  # each session ends with a stop: the next one reconnects
            async with running(killable, path) as client:
                await client.wait_up_to_date(timeout=WAIT_S)
                for _ in range(rng.randint(5, 12)):
                    mutation = random_mutation(rng, client, killable, f"c{n}-s{session}")
                    name, args, optimistic = mutation
                    mutation_id = client.mutate(name, args, optimistic=optimistic)
                    sent[n].append({"id": mutation_id, "name": name, "args": args})
                    if name == "create_issue" and args["team_id"] == killable.team:
                        created[n].append(str(args["title"]))
                    await asyncio.sleep(rng.random() * 0.05)
                assert client.queue is not None
                client_id = client.queue.client_id
        async with running(killable, path) as client:  # the app still writes: settle only
            await until(lambda: not client.queue.pending(),  # type: ignore[union-attr]
                        f"client {n} has nothing pending")
        return client_id

    writer = threading.Thread(target=app_writes)
    writer.start()
    try:
        try:
            client_ids = await asyncio.gather(*(one_client(n) for n in range(3)))
        finally:
            stop_writer.set()
            await asyncio.to_thread(writer.join)
        # Every client's copy equals Postgres once the app's writes are in (nothing pending).
        for n in range(3):
            async with running(killable, tmp_path / f"client{n}.sqlite") as client:
                await until(lambda: converged(client, killable.database_url, killable.team),
                            f"client {n} converged after the app's last writes")
        # Duplicate submits of everything a client sent: each is acknowledged, none runs.
        async with httpx.AsyncClient(base_url=killable.base_url, timeout=WAIT_S) as http:
            for n, client_id in enumerate(client_ids):
                answer = await http.post(
                    "/v1/mutate", json={"clientId": client_id, "mutations": sent[n][:50]},
                    headers={"authorization": f"Bearer {killable.token}"})
                assert answer.status_code == 200
                assert {r["status"] for r in answer.json()["results"]} == {"duplicate"}
                assert answer.json()["lastMutationId"] == len(sent[n])
    finally:
        gateway.stop()
    with psycopg.connect(killable.database_url) as conn:
        for n in range(3):
            # Each create ran once, in the order the client made them (ids are serial).
            order = [str(t) for (t,) in conn.execute(
                "SELECT title FROM created_log WHERE title LIKE %s ORDER BY seq", [f"c{n}-%"])]
            assert order == created[n]


def random_mutation(
    rng: random.Random, client: SyncClient, stack: Stack, prefix: str
) -> tuple[str, dict[str, Any], Any]:
    """A create (in the client's team, or in another: refused), a status change of a
    visible issue (or to a bogus status: refused), as the client would predict it."""
    kind = rng.random()
    if kind < 0.4:
        title = f"{prefix}-{rng.randrange(10**9)}"
        team = stack.team if rng.random() < 0.85 else stack.other_team
        args, optimistic = create(title, stack.team)
        return "create_issue", {**args, "team_id": team}, optimistic
    rows = client.replica.rows("open")
    issue = rng.choice(rows)
    status = rng.choice(["backlog", "todo", "in_progress", "in_review", "done", "bogus"])
    key = {"id": issue["id"]}
    return "set_status", {"issue_id": issue["id"], "status": status}, (
        lambda w: w.patch("open", key, {"status": status}))


async def test_capture_failover_while_mutations_are_in_flight(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The leading capture is killed (SIGKILL) between two bursts of mutations; the
    standby takes over: every mutation is confirmed in the stream once, the copy
    converges, each ran once."""
    user, other = seed_app(database_url, issues=200, seed=17)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ledger_sql.CREATE_SQL)
    captures = Captures(database_url, redis_url)
    gateway: GatewayProcess | None = None
    try:
        await asyncio.to_thread(captures.start)
        gateway = GatewayProcess(database_url, redis_url)
        stack = Stack(f"http://127.0.0.1:{gateway.port}", issue_token(user),
                      user.team_ids[0], other)
        reported: list[Settled] = []
        async with running(stack, tmp_path / "r.sqlite", on_outcome=reported.append) as client:
            await client.wait_up_to_date(timeout=WAIT_S)
            ids = []
            for burst in range(2):
                for i in range(5):
                    args, optimistic = create(f"Failover {burst}-{i}", stack.team)
                    ids.append(client.mutate("create_issue", args, optimistic=optimistic))
                if burst == 0:
                    assert "killed" in await asyncio.to_thread(captures.kill_leader)
            for mutation_id in ids:
                assert (await client.settled(mutation_id, timeout=WAIT_S)).status == "ok"
            await until(lambda: converged(client, database_url, stack.team), "converged")
        assert sorted(r.id for r in reported) == ids  # each reported once
    finally:
        if gateway is not None:
            gateway.stop()
        captures.cleanup()
    assert title_counts(database_url, "Failover %") == {
        f"Failover {b}-{i}": 1 for b in range(2) for i in range(5)}
