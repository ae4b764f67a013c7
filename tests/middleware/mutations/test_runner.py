"""Running mutations exactly once per client, against a real Postgres (no gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from pgsift.middleware.errors import (
    ConfigError,
    MutationForbiddenError,
    MutationGapError,
    MutationUnavailableError,
)
from pgsift.middleware.mutations.registry import load_mutators
from pgsift.middleware.mutations.request import MutateRequest, Mutation
from pgsift.middleware.mutations.runner import FAILED, MutationRunner
from pgsift.middleware.settings import Settings
from tests.middleware.mutations import app

ALICE = {"sub": "alice"}
BOB = {"sub": "bob"}


def runner_for(database_url: str, **settings: Any) -> MutationRunner:
    values: dict[str, Any] = {"database_url": database_url, "mutators": app.MUTATORS}
    values.update(settings)
    config = Settings(**values)
    return MutationRunner(config, load_mutators(config.mutators))


@pytest.fixture
async def runner(app_database: str) -> AsyncIterator[MutationRunner]:
    runner = runner_for(app_database)
    await runner.start()
    yield runner
    await runner.stop()


def request(client: str, first: int, *names: str, **args: Any) -> MutateRequest:
    return MutateRequest(
        client, tuple(Mutation(first + i, name, dict(args)) for i, name in enumerate(names))
    )


def notes(database_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        return [(str(o), str(b)) for o, b in conn.execute(
            "SELECT owner, body FROM notes ORDER BY id"
        )]


def ledger_row(database_url: str, client: str) -> tuple[Any, ...] | None:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT owner, last_mutation_id, last_status, last_error FROM pgsift.clients"
            " WHERE client_id = %s", [client]
        ).fetchone()


async def test_each_mutation_runs_once_and_a_resend_is_a_duplicate(
    runner: MutationRunner, app_database: str
) -> None:
    first = await runner.run(request("c1", 1, "add_note", "add_note", body="x"), ALICE)
    assert [(r.id, r.status) for r in first.results] == [(1, "ok"), (2, "ok")]
    assert first.last_mutation_id == 2
    # The answer was lost: the client sends the same request again, then more.
    again = await runner.run(request("c1", 1, "add_note", "add_note", "add_note", body="x"), ALICE)
    assert [(r.id, r.status) for r in again.results] == [
        (1, "duplicate"), (2, "duplicate"), (3, "ok")
    ]
    assert notes(app_database) == [("alice", "x")] * 3
    assert ledger_row(app_database, "c1") == ("alice", 3, "ok", None)


async def test_a_gap_runs_nothing(runner: MutationRunner, app_database: str) -> None:
    await runner.run(request("c1", 1, "add_note", body="x"), ALICE)
    with pytest.raises(MutationGapError) as caught:
        await runner.run(request("c1", 3, "add_note", "add_note", body="y"), ALICE)
    assert caught.value.last_mutation_id == 1
    assert "the next one to run is 2" in str(caught.value)
    # A new client must start at 1.
    with pytest.raises(MutationGapError):
        await runner.run(request("c2", 2, "add_note", body="z"), ALICE)
    assert notes(app_database) == [("alice", "x")]
    assert ledger_row(app_database, "c2") is None


async def test_clients_are_ordered_each_on_their_own(
    runner: MutationRunner, app_database: str
) -> None:
    for i in range(1, 4):
        for client in ("a", "b"):
            await runner.run(request(client, i, "add_note", body=f"{client}{i}"), ALICE)
    assert [b for _, b in notes(app_database)] == ["a1", "b1", "a2", "b2", "a3", "b3"]
    assert ledger_row(app_database, "a") == ("alice", 3, "ok", None)


async def test_refused_and_failing_mutators_advance_the_id_and_write_nothing(
    runner: MutationRunner, app_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = await runner.run(
        MutateRequest("c1", (
            Mutation(1, "refuse", {"why": "title taken"}),
            Mutation(2, "explode", {}),
            Mutation(3, "commit", {}),
            Mutation(4, "add_note", {"body": "after"}),
        )),
        ALICE,
    )
    assert [(r.id, r.status, r.message) for r in response.results] == [
        (1, "refused", "title taken"), (2, "error", FAILED), (3, "error", FAILED), (4, "ok", None),
    ]
    assert notes(app_database) == [("alice", "after")]
    assert "hunter2" in caplog.text  # the details are in the gateway's log, not the answer
    assert "hunter2" not in str(response)
    # The ledger recorded each outcome; a resend of them runs none again.
    again = await runner.run(request("c1", 1, "refuse", "explode", why="x"), ALICE)
    assert [r.status for r in again.results] == ["duplicate", "duplicate"]


async def test_the_ledger_records_the_last_outcome(
    runner: MutationRunner, app_database: str
) -> None:
    await runner.run(MutateRequest("c1", (Mutation(1, "refuse", {"why": "no"}),)), ALICE)
    assert ledger_row(app_database, "c1") == ("alice", 1, "refused", "no")
    await runner.run(request("c1", 2, "add_note", body="x"), ALICE)
    assert ledger_row(app_database, "c1") == ("alice", 2, "ok", None)


async def test_access_rules_refuse_and_advance(runner: MutationRunner, app_database: str) -> None:
    response = await runner.run(request("c1", 1, "admin_only", body="x"), ALICE)
    assert response.results[0].status == "refused"
    assert response.results[0].message == "not allowed: this mutator needs claim role = 'admin'"
    admin = {**ALICE, "role": "admin"}
    response = await runner.run(request("c1", 2, "admin_only", body="y"), admin)
    assert response.results[0].status == "ok"
    assert notes(app_database) == [("alice", "y")]


async def test_a_client_id_belongs_to_its_first_user(
    runner: MutationRunner, app_database: str
) -> None:
    await runner.run(request("c1", 1, "add_note", body="mine"), ALICE)
    for probe in (request("c1", 2, "add_note", body="theirs"), request("c1", 1, "add_note"),
                  MutateRequest("c1", ())):
        with pytest.raises(MutationForbiddenError, match="belongs to another user"):
            await runner.run(probe, BOB)
    with pytest.raises(MutationForbiddenError, match="'sub' claim"):
        await runner.run(request("c9", 1, "add_note", body="x"), {"team_ids": [1]})
    assert notes(app_database) == [("alice", "mine")]
    assert ledger_row(app_database, "c1") == ("alice", 1, "ok", None)


async def test_an_empty_request_reads_the_ledger(runner: MutationRunner) -> None:
    assert (await runner.run(MutateRequest("new", ()), ALICE)).last_mutation_id == 0
    await runner.run(request("c1", 1, "add_note", "add_note", body="x"), ALICE)
    assert (await runner.run(MutateRequest("c1", ()), ALICE)).last_mutation_id == 2


async def test_two_gateways_never_run_one_mutation_twice(app_database: str) -> None:
    """The same requests at two runners (two gateways) at once, over and over."""
    runners = [runner_for(app_database), runner_for(app_database)]
    for runner in runners:
        await runner.start()
    try:
        for round_ in range(20):
            client = f"c{round_}"
            batch = request(client, 1, "bump", "bump", "bump")
            answers = await asyncio.gather(*(r.run(batch, ALICE) for r in runners * 2))
            for position in range(3):
                statuses = sorted(answer.results[position].status for answer in answers)
                assert statuses == ["duplicate"] * 3 + ["ok"], (round_, position, statuses)
    finally:
        for runner in runners:
            await runner.stop()
    with psycopg.connect(app_database) as conn:
        assert conn.execute("SELECT value FROM counters").fetchone() == (60,)


async def test_a_second_gateway_waits_for_the_first_and_then_acknowledges(
    app_database: str,
) -> None:
    """While one gateway is inside a mutator, the same mutation at another waits on the
    client's row and then answers `duplicate`: the mutator ran once."""
    first, second = runner_for(app_database), runner_for(app_database)
    await first.start()
    await second.start()
    app.release.clear()
    app.stalled.clear()
    try:
        await first.run(request("c1", 1, "add_note", body="first"), ALICE)
        batch = MutateRequest("c1", (Mutation(2, "stall", {}),))
        running = asyncio.create_task(first.run(batch, ALICE))
        await asyncio.to_thread(app.stalled.wait, 60)
        waiting = asyncio.create_task(second.run(batch, ALICE))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # blocked on the ledger row
        app.release.set()
        assert (await running).results[0].status == "ok"
        assert (await waiting).results[0].status == "duplicate"
    finally:
        app.release.set()
        await first.stop()
        await second.stop()
    assert notes(app_database) == [("alice", "first"), ("alice", "stalled")]


async def test_a_mutator_past_its_statement_timeout_is_an_error(app_database: str) -> None:
    runner = runner_for(
        app_database, mutations_statement_timeout_s=0.2,
        mutators={"sleep": "tests.middleware.mutations.test_runner:sleep"},
    )
    await runner.start()
    try:
        response = await runner.run(MutateRequest("c1", (Mutation(1, "sleep", {}),)), ALICE)
    finally:
        await runner.stop()
    assert response.results[0].status == "error"
    assert ledger_row(app_database, "c1") == ("alice", 1, "error", FAILED)


def sleep(conn: psycopg.Connection[Any], args: dict[str, Any], claims: dict[str, Any]) -> None:
    conn.execute("SELECT pg_sleep(5)")


async def test_without_the_ledger_the_runner_does_not_start(database_url: str) -> None:
    runner = runner_for(database_url)
    with pytest.raises(ConfigError, match="capture --setup"):
        await runner.start()
    await runner.stop()


async def test_a_broken_connection_is_unavailable_not_an_outcome(app_database: str) -> None:
    runner = runner_for(
        app_database, mutators={**app.MUTATORS, "cut": "tests.middleware.mutations.test_runner:cut"}
    )
    await runner.start()
    try:
        # Several pooled connections (clients at once), then all of them die idle.
        await asyncio.gather(*(
            runner.run(request(f"warm{i}", 1, "bump"), ALICE) for i in range(6)
        ))
        with psycopg.connect(app_database, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] > 1
        # The request steps over the dead connections to a live one and runs.
        response = await runner.run(request("c1", 1, "add_note", body="x"), ALICE)
        assert response.results[0].status == "ok"
        # The connection dies inside a mutator: nothing is recorded, the client resends.
        with pytest.raises(MutationUnavailableError, match="retry"):
            await runner.run(request("c1", 2, "cut", "add_note", body="y"), ALICE)
        assert ledger_row(app_database, "c1") == ("alice", 1, "ok", None)
        response = await runner.run(request("c1", 2, "add_note", body="z"), ALICE)
        assert response.results[0].status == "ok"
    finally:
        await runner.stop()
    assert notes(app_database) == [("alice", "x"), ("alice", "z")]


def cut(conn: psycopg.Connection[Any], args: dict[str, Any], claims: dict[str, Any]) -> None:
    app.add_note(conn, {"body": "lost with the connection"}, claims)
    conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
