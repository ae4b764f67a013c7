"""Writes: the app's own mutators, run exactly once per client, behind the gateway.

A client sends `{clientId, mutations: [{id, name, args}]}` (`POST /v1/mutate`
or the GraphQL `mutate` field); `request` validates it, `registry` holds the
mutators configured in `[mutators]` (with `access` rules over claims),
`runner` runs each mutation in a transaction that also advances the client's
row in the `ledger` (`pgsift.clients`), so a resend never runs twice. A mutator
refuses with `Refused("why")`. The design, and how clients learn in the sync
stream that their mutation is in, are in docs/writes.md.
"""

from __future__ import annotations

from pgsift.middleware.errors import Refused

__all__ = ["Refused"]
