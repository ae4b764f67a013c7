"""`GET /v1/bootstrap` of relational shapes: Postgres's answer, always live, never a dump.

The rows of the response equal `SELECT` with the same subqueries (in the query,
in the policy) at the moment of the request; no dump is enqueued, warmed or
built for such a shape, and a dump of one left in the store (by an older
version) is not served: it may hold the rows of a team its caller has left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
import redis
from rq import Queue
from rq.job import JobStatus

from pgsift.middleware.bootstrap.finder import fresh_dump
from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE, enqueue_build, popular_specs
from pgsift.middleware.settings import Settings
from pgsift.middleware.wiring import Wiring
from pgsift.workers.build import DumpBuilder
from pgsift.workers.build_status import BuildStatus
from pgsift.workers.context import JobContext
from pgsift.workers.warm import WarmShape, due_builds
from tests.middleware.dumps.server import bootstrap_client
from tests.wire import described
from tests.workers.conftest import run_jobs
from tests.workers.schema import create_things

SECRET = "a-test-secret-of-at-least-32-bytes!"
MEMBER_OF = "SELECT team FROM memberships WHERE user_id = auth.sub"
POLICIES: dict[str, Any] = {
    "public.things": {"row": f"team IN ({MEMBER_OF})"},
    "public.memberships": {"columns": ["id", "team", "user_id"], "row": "user_id = auth.sub"},
}
COLUMNS = "id, team, name, price, ok, doc"
POLICY_SHAPE = f"SELECT {COLUMNS} FROM things WHERE ok"
# A client's own subquery, read under the memberships policy, and the things policy too.
QUERY_SHAPE = (
    f"SELECT {COLUMNS} FROM things WHERE price > $1 AND "
    "team IN (SELECT team FROM memberships WHERE user_id = $2 AND team <> $3)"
)
MEMBERSHIPS = """
CREATE TABLE memberships (id int PRIMARY KEY, team int, user_id text);
ALTER TABLE memberships REPLICA IDENTITY FULL;
INSERT INTO memberships VALUES (1, 0, 'u1'), (2, 1, 'u1'), (3, 2, 'u2'), (4, NULL, 'u1');
"""


def token(sub: str) -> str:
    now = int(time.time())
    return "Bearer " + jwt.encode({"sub": sub, "iat": now, "exp": now + 3600}, SECRET,
                                  algorithm="HS256")


def toml_config(path: Path) -> Path:
    lines = []
    for table, policy in POLICIES.items():
        lines.append(f'[policies."{table}"]')
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in policy.items())
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def client(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[httpx.Client]:
    # Jobs run in this process, configured like the gateway (same policies).
    monkeypatch.setenv("PGSIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("PGSIFT_REDIS_URL", redis_url)
    monkeypatch.setenv("PGSIFT_CONFIG", str(toml_config(tmp_path / "pgsift.toml")))
    monkeypatch.delenv("PGSIFT_DUMPS_DIR", raising=False)
    create_things(database_url, 600)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(MEMBERSHIPS)
    settings = Settings(database_url=database_url, redis_url=redis_url, policies=POLICIES)
    connection = redis.Redis.from_url(redis_url)
    wiring = Wiring.from_settings(settings, client=connection)
    with bootstrap_client(wiring, SECRET) as http:
        yield http
    connection.close()


def bootstrap(client: httpx.Client, sub: str, query: str, params: list[Any]
              ) -> tuple[str, dict[str, Any]]:
    """The response's source and its rows by id; checks the stream is complete."""
    response = client.get("/v1/bootstrap", params={"query": query, "params": json.dumps(params)},
                          headers={"Authorization": token(sub)})
    assert response.status_code == 200, response.text
    header, *rows, end = (json.loads(line) for line in response.text.splitlines())
    assert header["type"] == "header" and end["type"] == "end"
    assert end["count"] == len(rows)
    assert response.headers["x-pgsift-source"] == header["source"]
    return header["source"], {row["row"]["id"]: row["row"] for row in rows}


def postgres(database_url: str, sub: str, query: str, params: list[Any]) -> dict[str, Any]:
    """The oracle: the query with the policy's subquery ANDed in, run by Postgres now."""
    sql = query
    for index in range(len(params), 0, -1):
        sql = sql.replace(f"${index}", f"%(p{index})s")
    policy = POLICIES["public.things"]["row"].replace("auth.sub", "%(sub)s")
    named = {f"p{i + 1}": value for i, value in enumerate(params)} | {"sub": sub}
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(f"SELECT * FROM ({sql}) q WHERE {policy}".encode(), named)
        wire = described(cursor.description)
        rows = [wire.values(row) for row in cursor]
    return {row["id"]: row for row in rows}


def change(database_url: str, *statements: str) -> None:
    with psycopg.connect(database_url) as conn:  # one transaction
        for statement in statements:
            conn.execute(statement.encode())


def test_a_relational_policy_bootstraps_postgres_answer_live(
    client: httpx.Client, database_url: str, redis_url: str
) -> None:
    # A claim is a parameter of the subquery, never SQL text.
    for sub in ("u1", "u2", "nobody", "u1' OR 'a' = 'a"):
        source, rows = bootstrap(client, sub, POLICY_SHAPE, [])
        assert source == "live"
        assert rows == postgres(database_url, sub, POLICY_SHAPE, [])
    assert len(rows) == 0 and len(postgres(database_url, "u1", POLICY_SHAPE, [])) > 100
    # Memberships move: the next bootstrap follows at once.
    change(database_url, "DELETE FROM memberships WHERE id = 1",
           "INSERT INTO memberships VALUES (5, 2, 'u1')")
    source, rows = bootstrap(client, "u1", POLICY_SHAPE, [])
    assert rows == postgres(database_url, "u1", POLICY_SHAPE, [])
    assert {row["team"] for row in rows.values()} == {1, 2}
    # Nothing asked for a dump of it, and it does not count towards the popular shapes.
    connection = redis.Redis.from_url(redis_url)
    assert Queue(DUMPS_QUEUE, connection=connection).count == 0
    assert popular_specs(connection, JobContext.from_settings().database, 10) == []
    connection.close()


def test_a_relational_query_bootstraps_postgres_answer(
    client: httpx.Client, database_url: str
) -> None:
    for params in ([100, "u1", 0], [0, "u1", 5], [300.5, "u2", 1], [0, "u3", 0]):
        source, rows = bootstrap(client, str(params[1]), QUERY_SHAPE, params)
        assert source == "live"
        assert rows == postgres(database_url, str(params[1]), QUERY_SHAPE, params)
    # The inner select reads memberships under their policy: u2 asking for u1's teams
    # gets nothing (the policy's `user_id = auth.sub` holds for no row of u1).
    _, rows = bootstrap(client, "u2", QUERY_SHAPE, [0, "u1", 5])
    assert rows == {}


def test_a_left_over_dump_of_a_relational_shape_is_never_served(
    client: httpx.Client, database_url: str, redis_url: str
) -> None:
    """A dump built before u1 left team 0 (as an older version would have kept one)
    is fresh, but the bootstrap reads Postgres: no row of team 0 comes back."""
    context = JobContext.from_settings()
    try:
        shape, layout = context.shape(POLICY_SHAPE, [], {"sub": "u1"})
        assert shape.inner_sets
        built = DumpBuilder(context).build(shape, layout)
        assert built.status == "built" and built.rows > 0
        bounds = context.reader.bounds()
        assert fresh_dump(context.store, layout, max_age_s=3600, feed=bounds) is not None
    finally:
        context.close()
    change(database_url, "DELETE FROM memberships WHERE team = 0")
    source, rows = bootstrap(client, "u1", POLICY_SHAPE, [])
    assert source == "live"
    assert rows == postgres(database_url, "u1", POLICY_SHAPE, [])
    assert rows and 0 not in {row["team"] for row in rows.values()}


def test_relational_shapes_are_neither_warmed_nor_built(
    client: httpx.Client, redis_url: str
) -> None:
    context = JobContext.from_settings()
    try:
        warm = [WarmShape(POLICY_SHAPE, (), {"sub": "u1"}),
                WarmShape("SELECT id, team, user_id FROM memberships", (), {"sub": "u1"})]
        # The memberships shape has a plain policy: it is due; the relational one is not.
        assert [due.shape.query for due in due_builds(context, warm)] == [warm[1].query]
        # A build job asked for anyway (by hand, by an older gateway) fails and says why.
        _, layout = context.shape(POLICY_SHAPE, [], {"sub": "u1"})
        job = enqueue_build(context.client, context.database, jobs=context.jobs_client,
                            shape_key=layout.shape_key, query=POLICY_SHAPE, params=[],
                            claims={"sub": "u1"}, timeout_s=60)
        assert job is not None
        run_jobs(context.client)
        job.refresh()
        assert job.get_status() in (JobStatus.FAILED, JobStatus.SCHEDULED)
        error = BuildStatus.of(job).error
        assert error is not None and "relational shapes are served live, never from a dump" in error
        assert context.store.dumps(layout.shape_key) == []
    finally:
        context.close()
