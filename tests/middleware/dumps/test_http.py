"""`GET /v1/bootstrap`: live and from a dump, compressed or not, complete, policies applied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
import zstandard
from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE
from pgsift.middleware.dumps.http import BootstrapService, bootstrap_route
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.settings import Settings
from pgsift.subscriptions import values
from rq import Queue
from starlette.applications import Starlette

from tests.middleware.dumps.server import serve
from tests.workers.conftest import run_jobs
from tests.workers.schema import COLUMNS, create_things, select

SECRET = "a-test-secret-of-at-least-32-bytes!"
POLICIES = {"public.things": {"row": "team = ANY(auth.teams)"}}
QUERY = f"SELECT {COLUMNS} FROM things WHERE ok"


def token(**claims: Any) -> str:
    return "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def client(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[httpx.Client]:
    # Builds enqueued by the endpoint run in this process, configured like the gateway.
    monkeypatch.setenv("PGSIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("PGSIFT_REDIS_URL", redis_url)
    # Workers must apply the gateway's policies: same pgsift.toml.
    config = tmp_path / "pgsift.toml"
    config.write_text('[policies."public.things"]\nrow = "team = ANY(auth.teams)"\n')
    monkeypatch.setenv("PGSIFT_CONFIG", str(config))
    create_things(database_url, 2000)
    settings = Settings(database_url=database_url, redis_url=redis_url, policies=POLICIES)
    connection = redis.Redis.from_url(redis_url)
    app = Starlette(routes=[bootstrap_route(BootstrapService(settings=settings,
                                                              client=connection))])
    app.state.authenticator = Authenticator(secret=SECRET)
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        yield http
    connection.close()


def bootstrap(client: httpx.Client, encoding: str = "identity", teams: tuple[int, ...] = (1,),
              query: str = QUERY) -> tuple[Any, list[dict[str, Any]]]:
    response = client.get("/v1/bootstrap", params={"query": query, "params": "[]"},
                          headers={"Authorization": token(teams=list(teams)),
                                   "Accept-Encoding": encoding})
    assert response.status_code == 200, response.text
    return response, [json.loads(line) for line in response.text.splitlines()]


def expected_rows(database_url: str, teams: tuple[int, ...]) -> dict[Any, dict[str, Any]]:
    where = f"ok AND team IN ({','.join(map(str, teams))})"
    rows = select(database_url, f"SELECT {COLUMNS} FROM things WHERE {where}")
    return {k: {c: values.to_json(v) for c, v in row.items()} for k, row in rows.items()}


def check_complete(lines: list[dict[str, Any]], source: str, expected: dict[Any, Any]) -> str:
    header, *rows, end = lines
    assert header["type"] == "header" and header["source"] == source
    assert header["columns"] == [c.strip() for c in COLUMNS.split(",")]
    assert {r["row"]["id"]: r["row"] for r in rows} == expected
    assert end == {"type": "end", "count": len(expected), "cursor": header["cursor"]}
    return str(header["cursor"])


def test_live_then_from_the_dump_it_enqueued(client: httpx.Client, database_url: str,
                                              redis_url: str) -> None:
    expected = expected_rows(database_url, (1,))
    response, lines = bootstrap(client)
    assert response.headers["x-pgsift-source"] == "live"
    live_cursor = check_complete(lines, "live", expected)
    connection = redis.Redis.from_url(redis_url)
    assert Queue(DUMPS_QUEUE, connection=connection).count == 1
    # A second live bootstrap does not enqueue a second build.
    bootstrap(client)
    assert Queue(DUMPS_QUEUE, connection=connection).count == 1
    run_jobs(connection)
    connection.close()

    for encoding in ("identity", "gzip", "zstd"):
        response, lines = bootstrap(client, encoding)
        assert response.headers.get("content-encoding", "identity") == encoding
        cursor = check_complete(lines, "dump", expected)
        assert cursor.split("@")[0] == live_cursor.split("@")[0]


def test_the_zstd_dump_body_goes_out_as_stored(client: httpx.Client, redis_url: str) -> None:
    bootstrap(client)
    connection = redis.Redis.from_url(redis_url)
    run_jobs(connection)
    connection.close()
    with client.stream("GET", "/v1/bootstrap", params={"query": QUERY},
                       headers={"Authorization": token(teams=[1]),
                                "Accept-Encoding": "zstd"}) as response:
        assert response.headers["x-pgsift-source"] == "dump"
        raw = b"".join(response.iter_raw())
    text = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True).read()
    lines = text.decode().splitlines()
    assert json.loads(lines[-1])["count"] == len(lines) - 2


def test_live_compressed(client: httpx.Client, database_url: str) -> None:
    expected = expected_rows(database_url, (0, 2))
    for encoding in ("gzip", "zstd"):
        response, lines = bootstrap(client, encoding, teams=(0, 2))
        assert response.headers["content-encoding"] == encoding
        check_complete(lines, "live", expected)


def test_errors_a_client_can_act_on(client: httpx.Client) -> None:
    response = client.get("/v1/bootstrap", params={"query": QUERY})
    assert response.status_code == 401
    auth = {"Authorization": token(teams=[1])}
    response = client.get("/v1/bootstrap", params={"query": "SELECT nope FROM things"},
                          headers=auth)
    assert response.status_code == 400
    assert "nope" in response.json()["error"]
    response = client.get("/v1/bootstrap", params={"query": "SELECT id FROM pg_class"},
                          headers=auth)
    assert response.status_code in (400, 403)
    response = client.get("/v1/bootstrap", params={"query": QUERY, "params": "{"}, headers=auth)
    assert response.status_code == 400 and "params" in response.json()["error"]
    response = client.get("/v1/bootstrap", headers=auth)
    assert response.status_code == 400 and "query" in response.json()["error"]
