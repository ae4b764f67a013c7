"""The client's side of writes: sending the pending queue, and reading confirmations.

`MutationSender` posts the queue to `POST /v1/mutate` in id order, one request
at a time, resending after a failure until the server answers (the server runs
each id once, so a resend is safe: what ran comes back `duplicate`). It stops
the client on answers that no resend can change (a bad token, a mutation the
server refuses as input, a gap in the ids).

Confirmations come in the `sync` stream itself: on a connection whose
`connection_init` names the client id, every message of the transaction that
ran one of the client's mutations carries `confirmed {lastMutationId status
message failed {id status message}}` (docs/writes.md); `confirmation_of` turns it
into a `Confirmation`. `failed` lists the client's recent mutations that changed
nothing, so a confirmation that covers several at once (the first after a
snapshot, when the mutate answer was lost) reports each refusal as one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from examples.python_client.overlay import Confirmation, Failure, Settled
from examples.python_client.pending import PendingQueue

log = logging.getLogger(__name__)

MUTATE_PATH = "/v1/mutate"
# Answers after which the same request may succeed: the server is down, busy or restarting.
RETRY_STATUSES = frozenset({502, 503, 504})


class WriteError(Exception):
    """The server refused the queue in a way resending cannot change."""


def confirmation_of(message: Mapping[str, Any]) -> Confirmation | None:
    """The `Confirmation` a `sync` message carries (its `confirmed` field), or None."""
    confirmed = message.get("confirmed")
    if not confirmed:
        return None
    last = int(confirmed["lastMutationId"])
    failed = {
        int(item["id"]): Failure(str(item["status"]).lower(), str(item.get("message") or ""))
        for item in confirmed.get("failed") or ()
        if int(item["id"]) <= last
    }
    status = str(confirmed["status"]).lower()
    if status != "ok":
        failed[last] = Failure(status, str(confirmed.get("message") or ""))
    return Confirmation(last, message.get("cursor"), failed)


class MutationSender:
    """Posts the pending queue to the gateway until stopped; `wake()` after adding."""

    def __init__(
        self,
        base_url: str,
        queue: PendingQueue,
        *,
        headers: Callable[[], dict[str, str]],
        on_settled: Callable[[list[Settled]], None],
        max_batch: int = 100,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
    ) -> None:
        self.base_url = base_url
        self.queue = queue
        self.headers = headers
        self.on_settled = on_settled
        self.max_batch = max_batch
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopped: asyncio.Event) -> None:
        """Send until `stopped`; WriteError when the server refuses the queue itself."""
        delay = self.retry_delay
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False) as http:
            while not stopped.is_set():
                self._wake.clear()
                batch = self.queue.unsent(self.max_batch)
                if not batch:
                    await race(self._wake.wait(), stopped.wait())
                    continue
                body = {
                    "clientId": self.queue.client_id,
                    "mutations": [{"id": m.id, "name": m.name, "args": m.args} for m in batch],
                }
                try:
                    response = await http.post(MUTATE_PATH, json=body, headers=self.headers())
                except httpx.HTTPError as exc:
                    log.warning("cannot send mutations (%s); retrying in %.1f s", exc, delay)
                else:
                    if response.status_code == 200:
                        delay = self.retry_delay
                        self.on_settled(self.queue.acknowledge(response.json()["results"]))
                        continue
                    if response.status_code not in RETRY_STATUSES:
                        raise WriteError(
                            f"POST {MUTATE_PATH}: {response.status_code} {response.text[:500]}"
                        )
                    log.warning("the gateway is unavailable (%s); retrying in %.1f s",
                                response.status_code, delay)
                await race(asyncio.sleep(delay), stopped.wait())
                delay = min(delay * 2, self.max_retry_delay)


async def race(*waits: Awaitable[Any]) -> None:
    """Wait for the first of `waits` to end and cancel the others; its error propagates."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None:
            raise error
