"""The gateway serves the typed schema: live fields, reads by filter and by key, over
real websockets and HTTP, against Postgres and Redis, for strawberry and graphene."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pgsift.middleware.gateway.client import LocalCopy, OperationError, SyncConnection
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import (
    ISSUES_SCHEMA,
    POLICIES,
    TRANSPORTS,
    app_options,
    eventually,
    gateway_settings,
    serve,
    token,
)
from tests.middleware.gateway.pgrows import execute, expected

TEAM_1 = token({"sub": "u1", "team_ids": [1]})
LIVE = """
subscription Live($where: IssuesBoolExp, $cursor: String) {
  issues(where: $where, cursor: $cursor) {
    changes { op key { id } row { id title ...More } }
    cursor upToDate mustRefetch
  }
}
fragment More on Issues { status }
"""
# The oracle: what the policy (team_id = ANY(auth.team_ids)) and the filter leave.
ORACLE = "SELECT id, title, status FROM issues WHERE team_id = 1"


class TypedFollower:
    """A typed subscription's messages applied to a LocalCopy (keys and rows by field)."""

    def __init__(self) -> None:
        self.copy = LocalCopy()
        self.messages: list[dict[str, Any]] = []

    async def follow(self, conn: SyncConnection, variables: dict[str, Any]) -> None:
        async for data in conn.subscribe(LIVE, variables):
            message = data["issues"]
            self.messages.append(message)
            self.copy.apply(message)


async def _converged(database_url: str, follower: TypedFollower, oracle: str) -> bool:
    want = await expected(database_url, oracle, [])
    return follower.copy.up_to_date and follower.copy.rows == want


@pytest.fixture
async def issues(database_url: str) -> str:
    await execute(
        database_url,
        ISSUES_SCHEMA,
        "INSERT INTO issues (id, team_id, title, status, secret) VALUES "
        "(1, 1, 'one', 'open', 's'), (2, 2, 'two', 'open', 's'), (3, 1, 'three', 'doing', 's')",
    )
    return database_url


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_typed_rows_arrive_and_converge_with_postgres(
    issues: str, redis_url: str, transport: str
) -> None:

    with capturing(issues, redis_url):
        async with (
            serve(gateway_settings(issues, redis_url), **app_options(transport)) as url,
            await SyncConnection.connect(url, authorization=TEAM_1) as conn,
        ):
                follower = TypedFollower()
                task = asyncio.create_task(follower.follow(conn, {}))
                await eventually(lambda: follower.copy.up_to_date, "upToDate")
                first = follower.messages[0]
                row = first["changes"][0]["row"]
                # The selection (with its fragment) decides the columns synced.
                assert set(row) == {"id", "title", "status"}
                assert isinstance(row["id"], str)  # BigInt: its wire form
                assert await _converged(issues, follower, ORACLE)
                await execute(issues, "INSERT INTO issues (id, team_id, title) VALUES (4, 1, 'x')")
                await execute(issues, "UPDATE issues SET title = 'uno' WHERE id = 1")
                await execute(issues, "UPDATE issues SET team_id = 2 WHERE id = 3")  # moves out
                await execute(issues, "DELETE FROM issues WHERE id = 4")
                await eventually(lambda: _converged(issues, follower, ORACLE), "converged")
                ops = [[c["op"] for c in m["changes"]] for m in follower.messages[2:]]
                assert ops == [["INSERT"], ["UPDATE"], ["DELETE"], ["DELETE"]]
                task.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cursor_resumes_with_only_later_changes(
    issues: str, redis_url: str, transport: str
) -> None:
    settings = gateway_settings(issues, redis_url)
    with capturing(issues, redis_url):
        async with serve(settings, **app_options(transport)) as url:
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                first = TypedFollower()
                task = asyncio.create_task(first.follow(conn, {}))
                await eventually(lambda: first.copy.up_to_date, "upToDate")
                task.cancel()
            await execute(issues, "UPDATE issues SET title = 'later' WHERE id = 1",
                          "INSERT INTO issues (id, team_id, title) VALUES (9, 2, 'not mine')")
            async with await SyncConnection.connect(url, authorization=TEAM_1) as conn:
                resumed = TypedFollower()
                resumed.copy.rows = dict(first.copy.rows)
                task = asyncio.create_task(
                    resumed.follow(conn, {"cursor": first.copy.cursor})
                )
                await eventually(lambda: _converged(issues, resumed, ORACLE), "resumed")
                sent = [c["op"] for m in resumed.messages for c in m["changes"]]
                assert sent == ["UPDATE"]
                task.cancel()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_where_filters_like_sql_and_errors_name_the_input(
    issues: str, redis_url: str, transport: str
) -> None:

    oracle = ORACLE + " AND status = 'doing'"
    with capturing(issues, redis_url):
        async with (
            serve(gateway_settings(issues, redis_url), **app_options(transport)) as url,
            await SyncConnection.connect(url, authorization=TEAM_1) as conn,
        ):
                follower = TypedFollower()
                where = {"status": {"_eq": "doing"}}
                task = asyncio.create_task(follower.follow(conn, {"where": where}))
                await eventually(lambda: _converged(issues, follower, oracle), "snapshot")
                await execute(issues, "UPDATE issues SET status = 'doing' WHERE id = 1")
                await eventually(lambda: _converged(issues, follower, oracle), "moved in")
                task.cancel()
                bad = TypedFollower()
                with pytest.raises(OperationError) as refused:
                    await bad.follow(conn, {"where": {"_or": [{}, {"title": {"_eq": None}}]}})
                assert "where._or[1].title._eq: null is not a value" in str(refused.value)


def _http(url: str) -> str:
    return url.replace("ws://", "http://")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_queries_read_by_filter_and_by_key_under_the_policy(
    issues: str, redis_url: str, transport: str
) -> None:
    document = """
    query Read($where: IssuesBoolExp, $keys: [IssuesKeyInput!]!) {
      issues(where: $where, limit: 5) { id title }
      issuesByKey(keys: $keys) { id title status }
    }
    """
    variables = {"where": {"title": {"_like": "%e%"}},
                 "keys": [{"id": "3"}, {"id": 2}, {"id": "99"}]}  # fmt: skip
    async with (
        serve(gateway_settings(issues, redis_url), **app_options(transport)) as url,
        httpx.AsyncClient() as http,
    ):
            answer = await http.post(
                _http(url), json={"query": document, "variables": variables},
                headers={"authorization": TEAM_1},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert "errors" not in body, body
            # Team 2's row (id 2) is neither read by the filter nor by key.
            assert body["data"]["issues"] == [{"id": "1", "title": "one"},
                                              {"id": "3", "title": "three"}]  # fmt: skip
            assert body["data"]["issuesByKey"] == [
                {"id": "3", "title": "three", "status": "doing"}, None, None,
            ]
            anonymous = await http.post(_http(url), json={"query": document,
                                                          "variables": variables})
            assert "not authenticated" in anonymous.text
            browser = await http.get(_http(url), headers={"accept": "text/html"})
            assert browser.status_code == 200 and "graphiql" in browser.text.lower()



POINTS = """
subscription { issues { changes { op row { id title points2 } } upToDate mustRefetch } }
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_schema_change_rebuilds_the_schema_and_refetches_its_subscribers(
    issues: str, redis_url: str, transport: str
) -> None:
    """A column added while the gateway runs gets its field without a restart, and a
    subscription on the changed table ends with mustRefetch."""
    # No policies: every column of every table is readable, so a new column is typed.
    settings = gateway_settings(issues, redis_url, policies={})
    with capturing(issues, redis_url):
        async with (
            serve(settings, **app_options(transport)) as url,
            await SyncConnection.connect(url, authorization=TEAM_1) as conn,
        ):
            follower = TypedFollower()
            task = asyncio.create_task(follower.follow(conn, {}))
            await eventually(lambda: follower.copy.up_to_date, "upToDate")
            # Capture learns the table's columns from its first change, then sees them change.
            await execute(issues, "UPDATE issues SET title = 'uno' WHERE id = 1")
            await eventually(lambda: len(follower.messages) > 2, "the update")
            with pytest.raises(OperationError, match="points2"):  # no such field yet
                async for _ in conn.subscribe(POINTS, {}):
                    pass
            await execute(issues, "ALTER TABLE issues ADD COLUMN points2 int",
                          "UPDATE issues SET points2 = 7 WHERE id = 1")  # fmt: skip
            await eventually(lambda: follower.messages[-1]["mustRefetch"], "mustRefetch")
            task.cancel()
            rows: dict[str, Any] = {}
            await eventually(_subscribed(conn, rows), "the points2 field")
            assert rows["1"] == {"id": "1", "title": "uno", "points2": 7}


LABELS = """
subscription { labels { changes { op row { id name } } upToDate mustRefetch } }
"""
LABELS_TABLE = (
    "CREATE TABLE labels (id bigint PRIMARY KEY, team_id int NOT NULL, name text NOT NULL,"
    " secret text)",
    "ALTER TABLE labels REPLICA IDENTITY FULL",
)
LABELS_ROWS = "INSERT INTO labels VALUES (1, 1, 'bug', 's'), (2, 2, 'ops', 's')"
LABELS_POLICY = {"columns": ["id", "team_id", "name"], "row": "team_id = ANY(auth.team_ids)"}


@pytest.mark.parametrize("policies", ["none", "policy"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_table_created_while_serving_gets_typed_fields(
    issues: str, redis_url: str, transport: str, policies: str
) -> None:
    """A table created after the gateway started, readable with no policies or by a policy
    named before it existed, gets its typed fields once its first change is in the feed
    (capture does not flag a table's first appearance: the gateway spots the table its
    catalog lacks) - no restart."""
    readable = {} if policies == "none" else {**POLICIES, "public.labels": LABELS_POLICY}
    settings = gateway_settings(issues, redis_url, policies=readable)
    with capturing(issues, redis_url):
        async with (
            serve(settings, **app_options(transport)) as url,
            await SyncConnection.connect(url, authorization=TEAM_1) as conn,
        ):
            with pytest.raises(OperationError, match="labels"):  # no such field yet
                async for _ in conn.subscribe(LABELS, {}):
                    pass
            await execute(issues, *LABELS_TABLE, LABELS_ROWS)
            rows: dict[str, Any] = {}
            await eventually(_subscribed(conn, rows, LABELS, "labels"), "the labels field")
            want = {"1": {"id": "1", "name": "bug"}, "2": {"id": "2", "name": "ops"}}
            assert rows == (want if policies == "none" else {"1": want["1"]})


def _subscribed(
    conn: SyncConnection, rows: dict[str, Any], document: str = POINTS, field: str = "issues"
) -> Any:
    """A check that subscribes with `document` (`points2`) until the rebuilt schema is
    served and the snapshot arrives (its rows by id in `rows`)."""

    async def check() -> bool:
        rows.clear()
        try:
            async for data in conn.subscribe(document, {}):
                message = data[field]
                rows.update({c["row"]["id"]: c["row"] for c in message["changes"]})
                if message["upToDate"]:
                    return True
        except OperationError:
            return False  # the schema is rebuilt once the gateway has read the new catalog
        return False

    return check
