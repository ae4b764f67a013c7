"""A mutate request as a client sends it, validated before anything runs.

    {"clientId": "3f1c...", "mutations": [
        {"id": 7, "name": "create_issue", "args": {"team_id": 1, "title": "..."}},
        {"id": 8, "name": "set_status", "args": {"issue_id": 42, "status": "done"}}]}

`id`s are consecutive per client and ascending within a request; `args` is a
JSON object (default `{}`) of at most `mutations_max_args_bytes` once encoded and
`MAX_ARGS_DEPTH` levels deep; at most `mutations_max_batch` mutations per
request; every `name` is a configured mutator. Anything else is a
`MutationError` naming the first problem, and nothing of the request runs.
The same check serves `POST /v1/mutate` and the GraphQL `mutate` field.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.errors import MutationError
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.jsonvalues import nested_deeper_than

CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
MAX_ID = 2**63 - 1  # the ledger's bigint
MAX_ARGS_DEPTH = 32
_REQUEST_KEYS = frozenset({"clientId", "mutations"})
_MUTATION_KEYS = frozenset({"id", "name", "args"})


@dataclass(frozen=True, slots=True)
class MutationLimits:
    """How much one request may carry (`[mutations]` settings)."""

    max_batch: int = 100
    max_args_bytes: int = 65_536

    @classmethod
    def from_settings(cls, settings: Settings) -> MutationLimits:
        return cls(
            max_batch=settings.mutations_max_batch,
            max_args_bytes=settings.mutations_max_args_bytes,
        )


@dataclass(frozen=True, slots=True)
class Mutation:
    """One mutation of a client: run mutator `name` with `args`, as the client's `id`-th."""

    id: int
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class MutateRequest:
    """A client's mutations, in id order (possibly none: then it asks for its ledger)."""

    client_id: str
    mutations: tuple[Mutation, ...]


def parse_request(
    body: Any, *, mutators: Collection[str], limits: MutationLimits
) -> MutateRequest:
    """The request in `body` (parsed JSON), or MutationError saying what is wrong."""
    if not isinstance(body, dict):
        raise MutationError('the body must be a JSON object {"clientId", "mutations"}')
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise MutationError(f"unknown field(s): {', '.join(unknown)}")
    client_id = body.get("clientId")
    if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
        raise MutationError(
            '"clientId" must be a string of 1 to 64 letters, digits and _ . : -'
        )
    items = body.get("mutations")
    if not isinstance(items, list):
        raise MutationError('"mutations" must be a list')
    if len(items) > limits.max_batch:
        raise MutationError(
            f"{len(items)} mutations; at most {limits.max_batch} are allowed per request "
            "(mutations_max_batch)"
        )
    mutations = tuple(
        _mutation(index, item, mutators, limits) for index, item in enumerate(items)
    )
    for before, after in itertools.pairwise(mutations):
        if after.id != before.id + 1:
            raise MutationError(
                f"mutation ids must be consecutive: {after.id} follows {before.id}"
            )
    return MutateRequest(client_id, mutations)


def _mutation(
    index: int, item: Any, mutators: Collection[str], limits: MutationLimits
) -> Mutation:
    where = f"mutations[{index}]"
    if not isinstance(item, dict):
        raise MutationError(f'{where} must be an object {{"id", "name", "args"}}')
    unknown = sorted(set(item) - _MUTATION_KEYS)
    if unknown:
        raise MutationError(f"{where}: unknown field(s) {', '.join(unknown)}")
    mutation_id = item.get("id")
    if isinstance(mutation_id, bool) or not isinstance(mutation_id, int) or not (
        1 <= mutation_id <= MAX_ID
    ):
        raise MutationError(f"{where}.id must be an integer from 1 to {MAX_ID}")
    name = item.get("name")
    if not isinstance(name, str):
        raise MutationError(f"{where}.name must be a string")
    if name not in mutators:
        raise MutationError(f"{where}: no mutator named {name[:100]!r}")
    args = item.get("args", {})
    if not isinstance(args, dict):
        raise MutationError(f"{where}.args must be a JSON object")
    if nested_deeper_than(args, MAX_ARGS_DEPTH):
        raise MutationError(f"{where}.args is nested deeper than {MAX_ARGS_DEPTH} levels")
    size = len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limits.max_args_bytes:
        raise MutationError(
            f"{where}.args is {size} bytes of JSON; at most {limits.max_args_bytes} are "
            "allowed (mutations_max_args_bytes)"
        )
    return Mutation(mutation_id, name, args)

