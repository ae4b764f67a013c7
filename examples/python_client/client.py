"""Keep a local SQLite replica of some queries live through pgsift's `sync` subscription.

    replica = Replica("issues.sqlite")
    client = SyncClient("http://127.0.0.1:8000", replica, token=jwt)
    client.add("open_issues", "SELECT id, title, status FROM issues"
               " WHERE team_id = $1 AND status <> 'done'", [1])
    task = asyncio.create_task(client.run())      # follows every query, reconnects
    await client.wait_up_to_date()
    replica.rows("open_issues")                   # the copy; survives restarts
    await client.fetch_rows("issues", [{"id": 7}])  # by key, through the batch loader

All queries share one websocket. A restarted client resumes each query from the
cursor stored with its copy; `mustRefetch` drops that query's copy and subscribes
again without a cursor.

With `writes=True` the client also writes through the app's mutators:

    client = SyncClient(url, replica, token=jwt, writes=True)
    mutation_id = client.mutate(
        "set_status", {"issue_id": "42", "status": "done"},
        optimistic=lambda w: w.patch("open_issues", {"id": "42"}, {"status": "done"}))
    replica.rows("open_issues")                   # shows the change at once
    outcome = await client.settled(mutation_id)   # ok, or refused with the server's message

The queue lives in the replica (`pending.PendingQueue`): offline, mutations
wait there across restarts and go out, in order and each once, when the
gateway answers again. The websocket's `connection_init` names the client id,
so every `sync` message of a transaction that ran one of its mutations says so
(`confirmed`), and the `connection_ack` says how far the server got (a
reconnecting client stops resending those).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from examples.python_client.overlay import Settled
from examples.python_client.pending import Optimistic, PendingQueue
from examples.python_client.protocol import GraphQLWebSocket, OperationError, ProtocolError
from examples.python_client.replica import QueryState, Replica
from examples.python_client.writes import MutationSender, WriteError, confirmation_of, race

log = logging.getLogger(__name__)

SYNC_SUBSCRIPTION = """
subscription Sync($query: String!, $params: JSON, $cursor: String) {
  sync(query: $query, params: $params, cursor: $cursor) {
    changes { op key row }
    cursor
    upToDate
    mustRefetch
    types
    confirmed { lastMutationId status message failed { id status message } }
  }
}
"""
# Close codes after which trying again cannot help: bad or expired token, or a
# client that broke the protocol.
FATAL_CLOSE_CODES = frozenset({4400, 4401, 4403, 4409, 4429})

MessageHook = Callable[[str, Mapping[str, Any]], None]
OutcomeHook = Callable[[Settled], None]


class SyncError(Exception):
    """A query the server refused, or a connection that cannot succeed by retrying."""


class SyncClient:
    """Follows registered queries into a `Replica` until `stop()`."""

    def __init__(
        self,
        base_url: str,
        replica: Replica,
        *,
        token: str | None = None,
        graphql_path: str = "/graphql",
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
        on_message: MessageHook | None = None,
        writes: bool = False,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.replica = replica
        self.token = token
        self.ws_url = _websocket_url(self.base_url) + graphql_path
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.on_message = on_message
        self._names: list[str] = []
        self._up_to_date: dict[str, asyncio.Event] = {}
        self._stopped = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        # Writes: the queue, its sender, and what is known of each mutation's outcome.
        self.on_outcome = on_outcome
        self.queue: PendingQueue | None = None
        self._sender: MutationSender | None = None
        self._outcomes: dict[int, Settled] = {}
        self._outcome_known: dict[int, asyncio.Event] = {}
        if writes:
            self.queue = PendingQueue(replica)
            self._sender = MutationSender(
                self.base_url, self.queue, headers=lambda: self._auth_headers,
                on_settled=self._settle, retry_delay=retry_delay,
                max_retry_delay=max_retry_delay,
            )

    @property
    def _auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def _init_payload(self) -> dict[str, str]:
        """`connection_init`: the token, and the client id whose confirmations we want."""
        if self.queue is None:
            return self._auth_headers
        return {**self._auth_headers, "clientId": self.queue.client_id}

    def add(self, name: str, query: str, params: Sequence[Any] = ()) -> QueryState:
        """Follow a query into the replica table `rows_<name>` (call before `run`)."""
        state = self.replica.register(name, query, params)
        if name not in self._names:
            self._names.append(name)
            self._up_to_date[name] = asyncio.Event()
        return state

    def stop(self) -> None:
        self._stopped.set()

    def mutate(
        self, name: str, args: Mapping[str, Any], *, optimistic: Optimistic | None = None
    ) -> int:
        """Queue mutation `name(args)`; `optimistic(writes)` changes the replica at once.

        Returns the mutation's id. It is sent (now, or when the gateway can be
        reached) by `run()`; `settled(id)` waits for how it ended.
        """
        if self.queue is None or self._sender is None:
            raise SyncError("mutate needs SyncClient(..., writes=True)")
        mutation_id = self.queue.add(name, args, optimistic)
        self._sender.wake()
        return mutation_id

    async def settled(self, mutation_id: int, *, timeout: float | None = None) -> Settled:
        """Wait until mutation `mutation_id` of this process is confirmed or refused."""
        if mutation_id not in self._outcomes:
            known = self._outcome_known.setdefault(mutation_id, asyncio.Event())
            async with asyncio.timeout(timeout):
                await known.wait()
        return self._outcomes[mutation_id]

    def _settle(self, settled: list[Settled]) -> None:
        for outcome in settled:
            self._outcomes[outcome.id] = outcome
            self._outcome_known.setdefault(outcome.id, asyncio.Event()).set()
            if outcome.status != "ok":
                log.warning("mutation %d (%s) %s: %s", outcome.id, outcome.name,
                            outcome.status, outcome.message)
            if self.on_outcome is not None:
                self.on_outcome(outcome)

    async def wait_up_to_date(self, *names: str, timeout: float | None = None) -> None:
        """Wait until each named query (default: all) has caught up with the feed."""
        async with asyncio.timeout(timeout):
            for name in names or tuple(self._names):
                await self._up_to_date[name].wait()

    async def run(self) -> None:
        """Connect, follow every query, send the pending queue, reconnect after failures;
        return after `stop()`."""
        if self._sender is None:
            await self._follow_forever()
            return
        try:
            await race(self._follow_forever(), self._sender.run(self._stopped))
        except WriteError as exc:
            raise SyncError(str(exc)) from exc

    async def _follow_forever(self) -> None:
        delay = self.retry_delay
        while not self._stopped.is_set():
            try:
                async with GraphQLWebSocket(self.ws_url, self._init_payload) as ws:
                    delay = self.retry_delay
                    ran = ws.ack_payload.get("lastMutationId")
                    if self.queue is not None and isinstance(ran, int):
                        self.queue.acknowledge_through(ran)
                    await self._follow_all(ws)
            except ProtocolError as exc:
                if exc.code in FATAL_CLOSE_CODES:
                    raise SyncError(str(exc)) from exc
                log.warning("sync connection lost (%s); reconnecting in %.1f s", exc, delay)
            except OSError as exc:
                log.warning("cannot reach %s (%s); retrying in %.1f s", self.ws_url, exc, delay)
            for event in self._up_to_date.values():
                event.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._stopped.wait()
            except TimeoutError:
                delay = min(delay * 2, self.max_retry_delay)

    async def _follow_all(self, ws: GraphQLWebSocket) -> None:
        await race(self._stopped.wait(), *(self._follow(ws, name) for name in self._names))

    async def _follow(self, ws: GraphQLWebSocket, name: str) -> None:
        """Subscribe to one query for as long as the connection lasts."""
        while True:
            state = self.replica.state(name)
            cursor = state.resume_cursor
            if cursor is None:
                # No complete copy to resume: start clean, or rows deleted since a
                # half-applied snapshot would linger.
                self.replica.reset(name)
            variables = {"query": state.query, "params": state.params, "cursor": cursor}
            try:
                async for data in ws.subscribe(SYNC_SUBSCRIPTION, variables):
                    message = data["sync"]
                    if self.on_message is not None:
                        self.on_message(name, message)
                    if message.get("mustRefetch"):
                        log.info("%s: mustRefetch; bootstrapping again", name)
                        self.replica.reset(name)
                        self._up_to_date[name].clear()
                        break
                    settled = self.replica.apply(
                        name,
                        message.get("changes") or [],
                        cursor=message.get("cursor"),
                        up_to_date=bool(message.get("upToDate")),
                        types=message.get("types"),
                        confirmed=confirmation_of(message),
                    )
                    self._settle(settled)
                    if message.get("upToDate"):
                        self._up_to_date[name].set()
                else:
                    raise ProtocolError(f"the server ended the subscription of {name!r}")
            except OperationError as exc:
                raise SyncError(f"query {name!r}: {exc}") from exc

    async def fetch_rows(
        self, table: str, keys: Sequence[Any], columns: Sequence[str] | None = None
    ) -> list[dict[str, Any] | None]:
        """Rows by primary key through `POST /v1/rows`; None where absent or not allowed."""
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.base_url, trust_env=False)
        body: dict[str, Any] = {"table": table, "keys": list(keys)}
        if columns is not None:
            body["columns"] = list(columns)
        response = await self._http.post("/v1/rows", json=body, headers=self._auth_headers)
        if response.status_code != 200:
            raise SyncError(f"POST /v1/rows: {response.status_code} {response.text[:500]}")
        rows: list[dict[str, Any] | None] = response.json()["rows"]
        return rows

    async def aclose(self) -> None:
        self.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _websocket_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://")
    if base_url.startswith("http://"):
        return "ws://" + base_url.removeprefix("http://")
    return base_url
