"""The issue tracker's mutators (examples/issue_tracker/mutators.py) run through pgsift's
runner as its pgsift.toml configures them: the app's rules refuse, pgsift's advance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from examples.issue_tracker import apply_schema, demo_users, seed
from pgsift.middleware.mutations import ledger
from pgsift.middleware.mutations.registry import load_mutators
from pgsift.middleware.mutations.request import MutateRequest, Mutation
from pgsift.middleware.mutations.runner import MutationRunner
from pgsift.middleware.settings import load_settings
from tests.examples.stack import EXAMPLE_CONFIG


@pytest.fixture
async def runner(database_url: str) -> AsyncIterator[MutationRunner]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_schema(conn)
        seed(conn, issues=200, seed=3)
        conn.execute(ledger.CREATE_SQL)
    settings = load_settings(EXAMPLE_CONFIG, environ={}, database_url=database_url)
    runner = MutationRunner(settings, load_mutators(settings.mutators))
    await runner.start()
    yield runner
    await runner.stop()


async def results(
    runner: MutationRunner, claims: dict[str, Any], *mutations: tuple[str, dict[str, Any]]
) -> list[tuple[str, str | None]]:
    last = (await runner.run(MutateRequest("c", ()), claims)).last_mutation_id
    batch = tuple(Mutation(last + 1 + i, name, args) for i, (name, args) in enumerate(mutations))
    response = await runner.run(MutateRequest("c", batch), claims)
    return [(r.status, r.message) for r in response.results]


async def test_create_issue_and_set_status(runner: MutationRunner, database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        user = demo_users(conn, limit=1)[0]
        other = conn.execute(
            "SELECT min(id) FROM teams WHERE id <> ALL(%s)", [list(user.team_ids)]
        ).fetchone()
        foreign = conn.execute("SELECT min(id) FROM issues WHERE team_id = %s", other).fetchone()
    claims = user.claims()
    team = user.team_ids[0]
    assert await results(
        runner, claims,
        ("create_issue", {"team_id": team, "title": "From a client", "priority": 2}),
        ("create_issue", {"team_id": str(team), "title": "Wire-form team id"}),
        ("create_issue", {"team_id": other[0], "title": "Not my team"}),
        ("create_issue", {"team_id": team, "title": "   "}),
        ("create_issue", {"team_id": team, "title": "x", "priority": 9}),
    ) == [
        ("ok", None), ("ok", None),
        ("refused", f"you are not a member of team {other[0]}"),
        ("refused", "title must be a non-empty string of at most 200 characters"),
        ("refused", "priority must be an integer from 0 to 4"),
    ]
    with psycopg.connect(database_url) as conn:
        created = conn.execute(
            "SELECT id, number, creator_id, status::text FROM issues WHERE title = %s",
            ["From a client"],
        ).fetchone()
        assert created is not None
        top = conn.execute("SELECT issue_count FROM teams WHERE id = %s", [team]).fetchone()
    issue_id, number, creator, status = created
    assert (creator, status) == (user.id, "backlog")
    assert top is not None and top[0] == number + 1
    assert await results(
        runner, claims,
        ("set_status", {"issue_id": issue_id, "status": "done"}),
        ("set_status", {"issue_id": foreign[0], "status": "done"}),
        ("set_status", {"issue_id": 10**9, "status": "done"}),
        ("set_status", {"issue_id": issue_id, "status": "finished"}),
    ) == [
        ("ok", None),
        ("refused", f"there is no issue {foreign[0]} in your teams"),
        ("refused", f"there is no issue {10**9} in your teams"),
        ("refused", "status must be one of backlog, todo, in_progress, in_review, done, "
                    "canceled"),
    ]
    # set_status needs the user_id claim (config: claims = { user_id = true }).
    assert await results(runner, {"sub": claims["sub"]},
                         ("set_status", {"issue_id": issue_id, "status": "todo"})) == [
        ("refused", "not allowed: this mutator needs claim user_id"),
    ]
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT status::text FROM issues WHERE id = %s", [issue_id]
        ).fetchone() == ("done",)
