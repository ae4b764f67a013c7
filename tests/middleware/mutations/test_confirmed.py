"""`confirmed` in the `sync` stream: a connection bound to a client id (`clientId` in
`connection_init`) learns, in every subscription, at the cursor of the transaction
that ran it, how each of its mutations ended; on resume and in a fresh snapshot too.

Real servers: Postgres, `pgsift capture`, Redis, the gateway under uvicorn, over
both GraphQL transports; Postgres (the ledger row) is the oracle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
import pytest

from examples.python_client.protocol import GraphQLWebSocket, ProtocolError
from pgsift.middleware.settings import Settings
from tests.middleware.capture.processes import capturing
from tests.middleware.gateway.harness import WAIT_S, gateway_settings, serve, token
from tests.middleware.mutations import app

ALICE = token({"sub": "alice"})
BOB = token({"sub": "bob"})
SYNC = """
subscription Sync($query: String!, $params: JSON, $cursor: String) {
  sync(query: $query, params: $params, cursor: $cursor) {
    changes { op key row } cursor upToDate mustRefetch
    confirmed { lastMutationId status message }
  }
}
"""
NOTES = "SELECT id, owner, body FROM notes"
COUNTERS = "SELECT name, value FROM counters"
POLICIES = {
    "public.notes": {"columns": ["id", "owner", "body"], "row": "owner = auth.sub"},
    "public.counters": {"columns": ["name", "value"]},
}


def settings_for(database_url: str, redis_url: str) -> Settings:
    return gateway_settings(database_url, redis_url, mutators=app.MUTATORS, policies=POLICIES)


@pytest.fixture
def captured(app_database: str, redis_url: str) -> Any:
    with psycopg.connect(app_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE notes REPLICA IDENTITY FULL")
        conn.execute("ALTER TABLE counters REPLICA IDENTITY FULL")
    with capturing(app_database, redis_url):
        yield app_database


@asynccontextmanager
async def gateway(settings: Settings, transport: str) -> AsyncIterator[tuple[str, str]]:
    from tests.middleware.mutations.test_http import GRAPHENE_SCHEMA

    options = {"graphene_schema": GRAPHENE_SCHEMA} if transport == "graphene" else {}
    async with serve(settings, **options) as url:
        yield url, url.replace("ws://", "http://").removesuffix("/graphql")


async def post(base: str, client_id: str, mutations: list[dict[str, Any]],
               authorization: str = ALICE) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=WAIT_S) as http:
        answer = await http.post("/v1/mutate", json={"clientId": client_id,
                                                     "mutations": mutations},
                                 headers={"Authorization": authorization})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


class Stream:
    """One subscription's messages, read in the background."""

    def __init__(self, ws: GraphQLWebSocket, query: str, cursor: str | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(ws, query, cursor))

    async def _read(self, ws: GraphQLWebSocket, query: str, cursor: str | None) -> None:
        async for data in ws.subscribe(SYNC, {"query": query, "cursor": cursor}):
            self.messages.append(data["sync"])
            self.changed.set()

    async def until(self, check: Any, what: str) -> None:
        async with asyncio.timeout(WAIT_S):
            while not check(self):
                self.changed.clear()
                if self._task.done():
                    self._task.result()
                    raise AssertionError(f"the subscription ended before: {what}")
                await self.changed.wait()

    def confirmed(self) -> list[dict[str, Any]]:
        return [m["confirmed"] for m in self.messages if m["confirmed"] is not None]

    def last_confirmed(self) -> int:
        found = self.confirmed()
        return int(found[-1]["lastMutationId"]) if found else 0

    def cursor_of(self, mutation_id: int) -> str:
        return next(m["cursor"] for m in self.messages
                    if m["confirmed"] and m["confirmed"]["lastMutationId"] == mutation_id)

    def up_to_date(self) -> bool:
        return any(m["upToDate"] for m in self.messages)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def note(id: int, body: str) -> dict[str, Any]:
    return {"id": id, "name": "add_note", "args": {"body": body}}


@pytest.mark.parametrize("transport", ["strawberry", "graphene"])
async def test_every_subscription_of_the_client_gets_each_outcome_at_its_cursor(
    captured: str, redis_url: str, transport: str
) -> None:
    async with gateway(settings_for(captured, redis_url), transport) as (url, base):
        async with GraphQLWebSocket(url, {"authorization": ALICE, "clientId": "c1"}) as ws, \
                GraphQLWebSocket(url, {"authorization": BOB, "clientId": "c1"}) as thief:
            # A client never seen: its ledger has not run anything.
            assert ws.ack_payload == {"clientId": "c1", "lastMutationId": 0}
            notes, counters = Stream(ws, NOTES), Stream(ws, COUNTERS)
            # Bob names Alice's client id: he must learn nothing of her mutations.
            stolen = Stream(thief, COUNTERS)
            for stream in (notes, counters, stolen):
                await stream.until(Stream.up_to_date, "up to date")
            await post(base, "c1", [note(1, "first"),
                                    {"id": 2, "name": "refuse", "args": {"why": "nope"}},
                                    {"id": 3, "name": "bump", "args": {}},
                                    {"id": 4, "name": "explode", "args": {}}])
            for stream in (notes, counters):
                await stream.until(lambda s: s.last_confirmed() == 4, "all four confirmed")
                assert stream.confirmed() == [
                    {"lastMutationId": 1, "status": "OK", "message": None},
                    {"lastMutationId": 2, "status": "REFUSED", "message": "nope"},
                    {"lastMutationId": 3, "status": "OK", "message": None},
                    {"lastMutationId": 4, "status": "ERROR",
                     "message": "the mutator failed; the gateway's log has the details"},
                ]
            # The note arrives in the very message that confirms mutation 1; the counter's
            # update in the one that confirms mutation 3; every other one has no changes.
            by_id = {m["confirmed"]["lastMutationId"]: m for m in notes.messages
                     if m["confirmed"]}
            assert [c["row"]["body"] for c in by_id[1]["changes"]] == ["first"]
            assert [by_id[i]["changes"] for i in (2, 3, 4)] == [[], [], []]
            by_id = {m["confirmed"]["lastMutationId"]: m for m in counters.messages
                     if m["confirmed"]}
            assert [c["row"]["value"] for c in by_id[3]["changes"]] == ["1"]
            assert [by_id[i]["changes"] for i in (1, 2, 4)] == [[], [], []]
            # One feed cursor a mutation, the same in every subscription.
            assert [notes.cursor_of(i) for i in range(1, 5)] == [
                counters.cursor_of(i) for i in range(1, 5)]
            # Bob's counter subscription saw the update, never a confirmation.
            await stolen.until(lambda s: any(m["changes"] for m in s.messages), "the update")
            assert stolen.confirmed() == []
            resume_at = notes.cursor_of(1)
            for stream in (notes, counters, stolen):
                await stream.stop()

        async with GraphQLWebSocket(url, {"authorization": ALICE, "clientId": "c1"}) as ws:
            # Reconnecting, the client learns at once how far its ledger is.
            failed = "the mutator failed; the gateway's log has the details"
            assert ws.ack_payload == {
                "clientId": "c1", "lastMutationId": 4, "status": "error", "message": failed,
                "failed": [{"id": 2, "status": "refused", "message": "nope"},
                           {"id": 4, "status": "error", "message": failed}]}
            # Resumed after mutation 1: the catch-up brings 2, 3 and 4 at their cursors.
            resumed = Stream(ws, NOTES, cursor=resume_at)
            await resumed.until(lambda s: s.last_confirmed() == 4, "caught up")
            assert [c["lastMutationId"] for c in resumed.confirmed()] == [2, 3, 4]
            # A fresh snapshot carries the ledger version it holds on its first message
            # with a cursor (after its rows).
            fresh = Stream(ws, COUNTERS)
            await fresh.until(Stream.up_to_date, "the snapshot")
            first = next(m for m in fresh.messages if m["cursor"] is not None)
            assert first["confirmed"]["lastMutationId"] == 4
            assert fresh.confirmed() == [first["confirmed"]]
            assert all(m["confirmed"] is None for m in fresh.messages if m["cursor"] is None)
            await post(base, "c1", [note(5, "after")])
            for stream in (resumed, fresh):
                await stream.until(lambda s: s.last_confirmed() == 5, "live again")
                await stream.stop()


async def test_a_connection_without_client_id_gets_no_confirmations(
    captured: str, redis_url: str
) -> None:
    async with gateway(settings_for(captured, redis_url), "strawberry") as (url, base):
        async with GraphQLWebSocket(url, {"authorization": ALICE}) as ws:
            assert ws.ack_payload == {}
            counters = Stream(ws, COUNTERS)
            await counters.until(Stream.up_to_date, "up to date")
            await post(base, "c2", [note(1, "a"), {"id": 2, "name": "bump", "args": {}}])
            await counters.until(lambda s: any(m["changes"] for m in s.messages), "the bump")
            assert counters.confirmed() == []
            await counters.stop()
        # A malformed client id is refused at connection_init, clearly.
        with pytest.raises(ProtocolError) as refused:
            async with GraphQLWebSocket(url, {"authorization": ALICE, "clientId": "a b"}):
                pass
        assert refused.value.code == 4403


async def test_a_relational_subscription_gets_each_outcome_with_the_rows_it_moves(
    captured: str, redis_url: str
) -> None:
    """`IN (SELECT ...)` subscriptions take another path (`relational_session`): the
    confirmation rides with the moved-in rows of the transaction that ran the mutation."""
    relational = f"{NOTES} WHERE id IN (SELECT value FROM counters)"
    settings = settings_for(captured, redis_url)
    async with gateway(settings, "strawberry") as (url, base), \
            GraphQLWebSocket(url, {"authorization": ALICE, "clientId": "c3"}) as ws:
        notes = Stream(ws, relational)
        await notes.until(Stream.up_to_date, "up to date")
        # Note 1 is not in the set (counters hold 0) until `bump` makes it 1.
        await post(base, "c3", [note(1, "moved in"), {"id": 2, "name": "bump", "args": {}}])
        await notes.until(lambda s: s.last_confirmed() == 2, "both confirmed")
        assert [c["lastMutationId"] for c in notes.confirmed()] == [1, 2]
        by_id = {m["confirmed"]["lastMutationId"]: m for m in notes.messages
                 if m["confirmed"]}
        assert by_id[1]["changes"] == []
        assert [(c["op"], c["row"]["body"]) for c in by_id[2]["changes"]] == [
            ("INSERT", "moved in")]
        await notes.stop()
        # A fresh relational snapshot names the ledger version it holds.
        fresh = Stream(ws, relational)
        await fresh.until(Stream.up_to_date, "the snapshot")
        first = next(m for m in fresh.messages if m["cursor"] is not None)
        assert first["confirmed"]["lastMutationId"] == 2
        assert [c["row"]["body"] for m in fresh.messages for c in m["changes"]] == [
            "moved in"]
        await fresh.stop()


SYNC_FAILED = SYNC.replace("status message }", "status message failed { id status message } }")


@pytest.mark.parametrize("transport", ["strawberry", "graphene"])
async def test_a_fresh_snapshot_names_each_refusal_it_holds(
    captured: str, redis_url: str, transport: str
) -> None:
    """A client whose copy was reset after its mutate answer was lost learns its outcomes
    from the snapshot's one `confirmed` only: `failed` names the mutations that changed
    nothing, so the refused one is not taken for run."""
    async with gateway(settings_for(captured, redis_url), transport) as (url, base):
        await post(base, "c4", [{"id": 1, "name": "refuse", "args": {"why": "nope"}},
                                note(2, "kept"), {"id": 3, "name": "explode", "args": {}},
                                note(4, "kept too")])  # fmt: skip
        error = "the mutator failed; the gateway's log has the details"
        refusals = [{"id": 1, "status": "REFUSED", "message": "nope"},
                    {"id": 3, "status": "ERROR", "message": error}]  # fmt: skip
        async with GraphQLWebSocket(url, {"authorization": ALICE, "clientId": "c4"}) as ws:
            fresh = _FailedStream(ws, NOTES)
            await fresh.until(Stream.up_to_date, "the snapshot")
            first = next(m for m in fresh.messages if m["cursor"] is not None)
            assert first["confirmed"] == {"lastMutationId": 4, "status": "OK", "message": None,
                                          "failed": refusals}  # fmt: skip
            assert sorted(c["row"]["body"] for m in fresh.messages
                          for c in m["changes"]) == ["kept", "kept too"]  # fmt: skip
            # Live, each version carries the list as it stands then.
            await post(base, "c4", [{"id": 5, "name": "refuse", "args": {"why": "again"}}])
            await fresh.until(lambda s: s.last_confirmed() == 5, "the next refusal")
            assert fresh.confirmed()[-1]["failed"] == [
                *refusals, {"id": 5, "status": "REFUSED", "message": "again"}]
            await fresh.stop()


class _FailedStream(Stream):
    """A Stream whose document selects `confirmed.failed` too."""

    async def _read(self, ws: GraphQLWebSocket, query: str, cursor: str | None) -> None:
        async for data in ws.subscribe(SYNC_FAILED, {"query": query, "cursor": cursor}):
            self.messages.append(data["sync"])
            self.changed.set()
