"""`GET /v1/bootstrap`: live and from a dump, compressed or not, complete, policies applied."""

from __future__ import annotations

import dataclasses
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
import zstandard
from rq import Queue

from pgsift.middleware.bootstrap import finder
from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.enqueue import DUMPS_QUEUE, popular_specs
from pgsift.middleware.dumps.store import DumpInfo
from pgsift.middleware.settings import Settings
from pgsift.middleware.wiring import Wiring
from pgsift.workers.context import JobContext
from pgsift.workers.trim import drop_stale_in
from pgsift.workers.warm import popular_shapes
from tests.middleware.dumps.server import bootstrap_client
from tests.wire import wire_rows
from tests.workers.conftest import run_jobs
from tests.workers.schema import (
    COLUMNS,
    ODD_COLUMNS,
    ODD_TYPES,
    THINGS_TYPES,
    create_odd,
    create_things,
    odd_expected,
    select,
)

SECRET = "a-test-secret-of-at-least-32-bytes!"
POLICIES: dict[str, Any] = {"public.things": {"row": "team = ANY(auth.teams)"},
                           "public.odd": {}}
QUERY = f"SELECT {COLUMNS} FROM things WHERE ok"


def token(**claims: Any) -> str:
    now = int(time.time())
    claims = {"iat": now, "exp": now + 3600, **claims}
    return "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def client(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[httpx.Client]:
    # Builds enqueued by the endpoint run in this process, configured like the gateway.
    monkeypatch.setenv("PGSIFT_DATABASE_URL", database_url)
    monkeypatch.setenv("PGSIFT_REDIS_URL", redis_url)
    # Workers must apply the gateway's policies: same pgsift.toml.
    config = tmp_path / "pgsift.toml"
    config.write_text('[policies."public.things"]\nrow = "team = ANY(auth.teams)"\n'
                      '[policies."public.odd"]\n')
    monkeypatch.setenv("PGSIFT_CONFIG", str(config))
    create_things(database_url, 2000)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Shapes of a table with a row policy need it (see test_replica_identity).
        conn.execute("ALTER TABLE things REPLICA IDENTITY FULL")
    settings = Settings(database_url=database_url, redis_url=redis_url, policies=POLICIES)
    connection = redis.Redis.from_url(redis_url)
    wiring = Wiring.from_settings(settings, client=connection)
    with bootstrap_client(wiring, SECRET) as http:
        yield http
    connection.close()


def bootstrap(client: httpx.Client, encoding: str = "identity", teams: tuple[int, ...] = (1,),
              query: str = QUERY, **claims: Any) -> tuple[Any, list[dict[str, Any]]]:
    response = client.get("/v1/bootstrap", params={"query": query, "params": "[]"},
                          headers={"Authorization": token(teams=list(teams), **claims),
                                   "Accept-Encoding": encoding})
    assert response.status_code == 200, response.text
    return response, [json.loads(line) for line in response.text.splitlines()]


def expected_rows(database_url: str, teams: tuple[int, ...]) -> dict[Any, dict[str, Any]]:
    where = f"ok AND team IN ({','.join(map(str, teams))})"
    rows = select(database_url, f"SELECT {COLUMNS} FROM things WHERE {where}")
    return wire_rows(rows.values(), THINGS_TYPES)


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


def test_a_dump_built_for_one_callers_claims_is_not_served_to_another(
    client: httpx.Client, database_url: str, redis_url: str
) -> None:
    bootstrap(client, teams=(1,))
    connection = redis.Redis.from_url(redis_url)
    run_jobs(connection)
    connection.close()
    response, lines = bootstrap(client, teams=(1,))
    assert response.headers["x-pgsift-source"] == "dump"
    check_complete(lines, "dump", expected_rows(database_url, (1,)))
    # Same query, other claims: not team 1's dump, but team 2's rows, live.
    response, lines = bootstrap(client, teams=(2,))
    assert response.headers["x-pgsift-source"] == "live"
    check_odd = expected_rows(database_url, (2,))
    assert check_odd and all(row["team"] == 2 for row in check_odd.values())
    check_complete(lines, "live", check_odd)


def test_values_as_capture_decodes_them_live_and_from_a_dump(
    client: httpx.Client, database_url: str, redis_url: str
) -> None:
    """Enum arrays, infinite timestamps, inet and ranges, in a database whose TimeZone
    is not UTC: the rows equal `pgtext.parse_text` of each value's output text."""
    create_odd(database_url)
    expected = wire_rows(odd_expected(database_url).values(), ODD_TYPES)
    query = f"SELECT {ODD_COLUMNS} FROM odd"
    response, lines = bootstrap(client, query=query)
    assert response.headers["x-pgsift-source"] == "live"
    assert {line["row"]["id"]: line["row"] for line in lines[1:-1]} == expected
    assert lines[-1]["count"] == 3
    connection = redis.Redis.from_url(redis_url)
    run_jobs(connection)
    connection.close()
    response, lines = bootstrap(client, query=query)
    assert response.headers["x-pgsift-source"] == "dump"
    assert {line["row"]["id"]: line["row"] for line in lines[1:-1]} == expected
    assert lines[-1]["count"] == 3


def test_a_dump_dropped_between_being_chosen_and_leased_is_not_served(
    client: httpx.Client, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap(client)
    connection = redis.Redis.from_url(redis_url)
    run_jobs(connection)
    connection.close()
    context = JobContext.from_settings()
    dropping = dataclasses.replace(context, settings=context.settings.replace(
        dumps_retention_s=0))
    choose = finder.fresh_dump

    def chosen_then_dropped(*args: Any, **kwargs: Any) -> DumpInfo | None:
        info = choose(*args, **kwargs)
        assert info is not None
        assert drop_stale_in(dropping) == [info.dump_id]  # the worker's clean-up, meanwhile
        return info

    monkeypatch.setattr(finder, "fresh_dump", chosen_then_dropped)
    try:
        response, lines = bootstrap(client)
    finally:
        context.close()
    assert response.headers["x-pgsift-source"] == "live"
    check_complete(lines, "live", expected_rows(database_url, (1,)))


def test_popularity_counts_shapes_not_tokens(client: httpx.Client, redis_url: str) -> None:
    now = int(time.time())
    for n in range(3):  # one caller, its token refreshed each time
        bootstrap(client, iat=now - n, exp=now + 3600 - n, sub="user-7")
    connection = redis.Redis.from_url(redis_url)
    context = JobContext.from_settings()
    try:
        [(shape_key, spec)] = popular_specs(connection, context.database, 10)
        assert connection.zscore(keys.popular_shapes(context.database), shape_key) == 3
        # Only the claims the policy reads: enough for a worker to parse the same shape.
        assert spec == {"query": QUERY, "params": [], "claims": {"teams": [1]}}
        [warm] = popular_shapes(context)
        _, layout = context.shape(warm.query, list(warm.params), dict(warm.claims))
        assert layout.shape_key == shape_key
    finally:
        context.close()
        connection.close()


def test_a_row_policy_table_without_full_replica_identity_is_refused(
    client: httpx.Client, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE things REPLICA IDENTITY DEFAULT")
    response = client.get("/v1/bootstrap", params={"query": QUERY, "params": "[]"},
                          headers={"Authorization": token(teams=[1])})
    assert response.status_code == 403
    assert "ALTER TABLE public.things REPLICA IDENTITY FULL" in response.json()["error"]


@pytest.mark.parametrize(
    ("where", "params"),
    [
        ("name = $1", ["a\u0000b"]),
        ("name = $1", ["\ud800"]),
        ("name = 'a\u0000b'", []),
        ("price = 1e999999", []),
        ("price = $1", ["1e999999"]),
    ],
)
def test_values_postgres_refuses_are_a_400_and_enqueue_nothing(
    client: httpx.Client, redis_url: str, where: str, params: list[Any]
) -> None:
    """Before: a 200 cut off mid-stream and a dump build that failed in the worker."""
    response = client.get(
        "/v1/bootstrap",
        params={"query": f"SELECT {COLUMNS} FROM things WHERE {where}",
                "params": json.dumps(params)},
        headers={"Authorization": token(teams=[1])},
    )
    assert response.status_code == 400, response.text
    assert "invalid input" in response.json()["error"] or "out of range" in response.json()["error"]
    connection = redis.Redis.from_url(redis_url)
    assert Queue(DUMPS_QUEUE, connection=connection).count == 0
    connection.close()


def test_a_null_claim_is_refused_not_read_as_sql_null(client: httpx.Client) -> None:
    response = client.get("/v1/bootstrap", params={"query": QUERY, "params": "[]"},
                          headers={"Authorization": "Bearer " + jwt.encode(
                              {"teams": None, "exp": int(time.time()) + 3600}, SECRET,
                              algorithm="HS256")})
    assert response.status_code == 403, response.text
    assert "claim 'teams' is null" in response.json()["error"]
