"""Running a client's mutations exactly once: one transaction per mutation, ledger locked.

For each mutation, in id order, on one pooled connection:

1. `BEGIN`; advance the client's ledger row to this id when it is the next one
   and the caller's (`ledger.claim`: one UPDATE, which also holds the row lock
   until the transaction ends; concurrent callers for the client wait on it).
2. Otherwise lock the row (`ledger.lock`; created for a new client, as the
   caller's) to see why: another caller's client id: 403, nothing runs;
   `id <= last_mutation_id`: already run (a resend after a lost answer, or the
   same request at two gateways at once): `duplicate`, nothing runs again;
   `id > last_mutation_id + 1`: a gap: 409, nothing runs.
3. Run the mutator with the connection, its args and the caller's claims and
   `COMMIT`: its writes and the advance, both or neither.
4. A mutator that refuses (`Refused`) or raises: roll its writes back, then, in a
   transaction of its own (lock, check again, advance), record the id with status
   `refused` or `error` and the message — the client learns it and drops its
   optimistic change; a mutation is never silently lost. Serialization failures
   and deadlocks are retried first; a connection that breaks is a 503 (the
   client resends; what committed comes back as `duplicate`).

Mutators are synchronous functions: each request runs in a worker thread of
this runner's own pool (`mutations_pool_size` threads and connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pgsift.middleware.errors import (
    ConfigError,
    MutationForbiddenError,
    MutationGapError,
    MutationUnavailableError,
    Refused,
)
from pgsift.middleware.mutations import ledger
from pgsift.middleware.mutations.registry import Mutator, Mutators
from pgsift.middleware.mutations.request import MutateRequest, Mutation
from pgsift.middleware.settings import Settings

log = logging.getLogger(__name__)

Outcome = Literal["ok", "refused", "error", "duplicate"]
RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
ATTEMPTS = 3
FAILED = "the mutator failed; the gateway's log has the details"


@dataclass(frozen=True, slots=True)
class MutationResult:
    """How one mutation ended: `message` for `refused` and `error`."""

    id: int
    status: Outcome
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.message is not None:
            body["message"] = self.message
        return body


@dataclass(frozen=True, slots=True)
class MutateResponse:
    """The answer to a request: one result per mutation, and where the ledger stands."""

    client_id: str
    last_mutation_id: int
    results: tuple[MutationResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "clientId": self.client_id,
            "lastMutationId": self.last_mutation_id,
            "results": [result.to_json() for result in self.results],
        }


class _Failed(Exception):
    """The mutator raised `__cause__` in the transaction."""


class _DeadConnection(Exception):
    """The connection was broken before the mutation's first statement got through."""


class MutationRunner:
    """Runs mutate requests for one gateway process; `start()` / `stop()` from its lifespan."""

    def __init__(self, settings: Settings, mutators: Mutators) -> None:
        if not settings.database_url:
            raise ConfigError("mutations need database_url")
        self.mutators = mutators
        self.owner_claim = settings.mutations_owner_claim
        timeout = f"{int(settings.mutations_statement_timeout_s * 1000)}ms"

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", [timeout])

        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=settings.mutations_pool_size,
            kwargs={"autocommit": True},
            configure=configure,
            timeout=settings.mutations_wait_s,
            open=False,
            name="pgsift-mutations",
        )
        self._executor = ThreadPoolExecutor(
            max_workers=settings.mutations_pool_size, thread_name_prefix="pgsift-mutator"
        )

    async def start(self) -> None:
        """Open the pool; ConfigError when the ledger table is missing."""
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.pool.open(wait=True)
        with self.pool.connection() as conn:
            ledger.require(conn)

    async def stop(self) -> None:
        await asyncio.to_thread(self._executor.shutdown)
        await asyncio.to_thread(self.pool.close)

    def owner(self, claims: Mapping[str, Any]) -> str:
        """Whose client ids the caller may use: its owner claim, as text."""
        value = claims.get(self.owner_claim)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise MutationForbiddenError(
                f"mutations need the caller's {self.owner_claim!r} claim (mutations_owner_claim)"
            )
        return str(value)

    async def run(self, request: MutateRequest, claims: Mapping[str, Any]) -> MutateResponse:
        """Run `request` for the caller with `claims`; MutationError subclasses on refusal."""
        owner = self.owner(claims)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._execute, request, dict(claims), owner
        )

    def _execute(
        self, request: MutateRequest, claims: dict[str, Any], owner: str
    ) -> MutateResponse:
        fresh = True  # nothing of the request has reached the database yet
        dead = 0
        while True:
            try:
                with self.pool.connection() as conn:
                    if not request.mutations:
                        return self._ledger_only(conn, request.client_id, owner)
                    results = []
                    last = 0
                    for mutation in request.mutations:
                        result, last = self._run_one(
                            conn, request.client_id, owner, mutation, claims
                        )
                        fresh = False
                        results.append(result)
                    return MutateResponse(request.client_id, last, tuple(results))
            except PoolTimeout as exc:
                raise MutationUnavailableError(
                    "every mutation connection is busy; retry the same request"
                ) from exc
            except _DeadConnection as exc:
                # Pooled connections are not checked on checkout (a round trip per
                # request): one that died idle (a Postgres restart kills them all)
                # fails at the first statement, before anything ran; the pool drops
                # it and the request takes the next one.
                dead += 1
                if not fresh or dead > self.pool.max_size:
                    raise MutationUnavailableError(
                        "the database is unavailable; retry the same request"
                    ) from exc.__cause__
                log.info("a pooled connection was dead (%s); taking another", exc.__cause__)
            except psycopg.OperationalError as exc:
                raise MutationUnavailableError(
                    "the database is unavailable; retry the same request"
                ) from exc

    def _ledger_only(self, conn: ledger.Conn, client_id: str, owner: str) -> MutateResponse:
        row = ledger.read(conn, client_id)
        if row is not None:
            _check_owner(row, client_id, owner)
        return MutateResponse(client_id, row.last_mutation_id if row else 0, ())

    def _run_one(
        self,
        conn: ledger.Conn,
        client_id: str,
        owner: str,
        mutation: Mutation,
        claims: dict[str, Any],
    ) -> tuple[MutationResult, int]:
        mutator = self.mutators[mutation.name]
        refusal = mutator.access.refusal(claims)
        if refusal is not None:
            return self._record(conn, client_id, owner, mutation, "refused", refusal)
        status: ledger.Status = "error"
        message = FAILED
        for attempt in range(ATTEMPTS):
            try:
                return self._attempt(conn, client_id, owner, mutator, mutation, claims)
            except _Failed as failed:
                cause = failed.__cause__
                if isinstance(cause, Refused):
                    status, message = "refused", str(cause) or "refused"
                    break
                if isinstance(cause, RETRIED) and attempt + 1 < ATTEMPTS:
                    continue
                log.error(
                    "mutator %s failed (client %s, mutation %d)", mutation.name, client_id,
                    mutation.id, exc_info=cause,
                )
                break
        return self._record(conn, client_id, owner, mutation, status, message)

    def _attempt(
        self,
        conn: ledger.Conn,
        client_id: str,
        owner: str,
        mutator: Mutator,
        mutation: Mutation,
        claims: dict[str, Any],
    ) -> tuple[MutationResult, int]:
        with contextlib.ExitStack() as transaction:
            try:
                transaction.enter_context(conn.transaction())
                claimed = ledger.claim(conn, client_id, owner, mutation.id)
            except psycopg.OperationalError as exc:
                if conn.broken:
                    raise _DeadConnection() from exc
                raise
            if not claimed:
                row = _locked(conn, client_id, owner, mutation.id)
                if mutation.id <= row.last_mutation_id:
                    return MutationResult(mutation.id, "duplicate"), row.last_mutation_id
                ledger.advance(conn, client_id, mutation.id, "ok", None)
            try:
                mutator.function(conn, dict(mutation.args), dict(claims))
            except Exception as exc:
                if conn.broken:
                    raise  # the connection, not the mutator: the caller retries the request
                raise _Failed() from exc
        return MutationResult(mutation.id, "ok"), mutation.id

    def _record(
        self,
        conn: ledger.Conn,
        client_id: str,
        owner: str,
        mutation: Mutation,
        status: ledger.Status,
        message: str,
    ) -> tuple[MutationResult, int]:
        """Advance past a mutation whose writes were rolled back, recording why."""
        with conn.transaction():
            row = _locked(conn, client_id, owner, mutation.id)
            if mutation.id <= row.last_mutation_id:  # another gateway ran it meanwhile
                return MutationResult(mutation.id, "duplicate"), row.last_mutation_id
            ledger.advance(conn, client_id, mutation.id, status, message)
        return MutationResult(mutation.id, status, message), mutation.id


def _locked(conn: ledger.Conn, client_id: str, owner: str, mutation_id: int) -> ledger.LedgerRow:
    """The locked ledger row, checked: the caller's own, and `mutation_id` not past a gap."""
    row = ledger.lock(conn, client_id, owner)
    _check_owner(row, client_id, owner)
    if mutation_id > row.last_mutation_id + 1:
        raise MutationGapError(
            f"mutation {mutation_id} of client {client_id} leaves a gap: the next one to run "
            f"is {row.last_mutation_id + 1}; send the mutations from there, in order",
            last_mutation_id=row.last_mutation_id,
        )
    return row


def _check_owner(row: ledger.LedgerRow, client_id: str, owner: str) -> None:
    if row.owner != owner:
        raise MutationForbiddenError(f"client id {client_id} belongs to another user")
