"""The example apps with pgsift mounted (examples/strawberry_app, examples/graphene_app).

Each runs under uvicorn as its README says, against real Postgres, Redis and
`pgsift capture`: the app's own query and mutation answer over HTTP, the
official graphql-ws client (node) follows a typed subscription until its copy
equals Postgres, and the policy of examples/todos/pgsift.toml decides rows and
columns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette

from examples.graphene_app import app as graphene_example
from examples.strawberry_app import app as strawberry_example
from examples.todos import CONFIG
from examples.todos.store import apply_schema
from examples.todos.token import token
from pgsift.middleware.settings import load_settings
from tests.e2e.node import NodeClient
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import eventually, serving
from tests.middleware.gateway.pgrows import expected

LIST_1 = token([1])
LIVE = """
subscription OpenTodos($where: TodosBoolExp) {
  todos(where: $where) {
    changes { op key { id } row { id title done } }
    cursor upToDate mustRefetch
  }
}
"""
OPEN = {"done": {"_eq": False}}
ORACLE = "SELECT id, title, done FROM todos WHERE list_id = 1 AND NOT done"
APPS = {"strawberry": strawberry_example.app, "graphene": graphene_example.app}


@pytest.fixture(params=sorted(APPS))
async def example(
    request: pytest.FixtureRequest, database_url: str, redis_url: str
) -> AsyncIterator[tuple[str, str]]:
    """(http URL of /graphql, ws URL) of the example app, with capture running."""
    apply_schema(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO todos (list_id, title, done, private_note) VALUES "
            "(1, 'milk', false, 'n'), (1, 'bread', true, 'n'), (2, 'other list', false, 'n')"
        )
    settings = load_settings(CONFIG, environ={}, database_url=database_url, redis_url=redis_url)
    app: Starlette = APPS[request.param](settings)
    with capturing(database_url, redis_url):
        async with serving(app, settings) as url:
            yield url.replace("ws://", "http://"), url


async def _post(http: httpx.AsyncClient, url: str, query: str, **variables: Any) -> Any:
    answer = await http.post(url, json={"query": query, "variables": variables})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


async def test_the_apps_own_query_and_mutation_answer_over_http(
    example: tuple[str, str],
) -> None:
    url, _ = example
    async with httpx.AsyncClient(timeout=60) as http:
        assert await _post(http, url, "{ openTodos(listId: 1) }") == {"openTodos": 1}
        added = await _post(
            http, url, "mutation($t: String!) { addTodo(listId: 1, title: $t) { title done } }",
            t="eggs",
        )  # fmt: skip
        assert added == {"addTodo": {"title": "eggs", "done": False}}
        assert await _post(http, url, "{ openTodos(listId: 1) }") == {"openTodos": 2}
        page = await http.get(url, headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_a_typed_subscription_with_the_official_client_converges(
    example: tuple[str, str], database_url: str
) -> None:
    url, ws = example
    client = await NodeClient.subscribe(ws, LIST_1, LIVE, "todos", {"where": OPEN})
    try:
        await eventually(lambda: client.copy.up_to_date, "upToDate")

        async def converged() -> bool:
            return client.copy.rows == await expected(database_url, ORACLE, [])

        assert await converged()
        async with httpx.AsyncClient(timeout=60) as http:
            mutation = "mutation($l: Int!, $t: String!) { addTodo(listId: $l, title: $t) { id } }"
            await _post(http, url, mutation, l=1, t="tea")
            await _post(http, url, mutation, l=2, t="not mine")  # the policy keeps it away
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE todos SET done = true WHERE title = 'milk'")  # moves out
        await eventually(converged, "the node client's copy equals Postgres")
        titles = sorted(row["title"] for row in client.copy.rows.values())
        assert titles == ["tea"]
    finally:
        await client.stop()


async def test_the_policy_decides_rows_and_columns(example: tuple[str, str]) -> None:
    url, ws = example
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(
            url, json={"query": "{ todos { title } }"}, headers={"authorization": LIST_1}
        )
        assert answer.json()["data"] == {"todos": [{"title": "milk"}, {"title": "bread"}]}
        secret = await http.post(
            url, json={"query": "{ todos { privateNote } }"}, headers={"authorization": LIST_1}
        )
        assert "Cannot query field 'privateNote' on type 'Todos'" in secret.text
    client = await NodeClient.subscribe(
        ws, None, LIVE, "todos", {"where": OPEN}
    )  # no token: refused at connection_init
    events = await client.finished()
    assert events[-1]["type"] == "closed" and events[-1]["code"] == 4403
