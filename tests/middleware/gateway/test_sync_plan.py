"""Compiled `sync` serializers give exactly the JSON graphql-core execution gives.

The oracle is the real execution of each schema (graphene's through graphql-core's
`subscribe`, strawberry's through `Schema.subscribe`), fed the same messages by a
service stand-in at the `SyncService.sync` seam; random selections (aliases,
`__typename`, fragments, `@skip` / `@include` with literals and variables,
repeated fields) and random messages, compared byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import graphene  # type: ignore[import-untyped]
from graphql import ExecutionResult, parse, subscribe, validate
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pgsift.middleware.gateway.graphene_adapter import sync_field
from pgsift.middleware.gateway.messages import SyncMessage, WireChange
from pgsift.middleware.gateway.schema import build_schema
from pgsift.middleware.gateway.sync_plan import encode, next_frame, plan_sync
from pgsift.middleware.mutations.confirmed import Confirmed, Failure

MESSAGE_FIELDS = ("changes", "cursor", "upToDate", "mustRefetch", "types", "confirmed",
                  "__typename")
CHANGE_FIELDS = ("op", "key", "row", "__typename")
CONFIRMED_FIELDS = ("lastMutationId", "status", "message", "failed", "__typename")
FAILED_FIELDS = ("id", "status", "message", "__typename")
ALIASES = ("a", "b", "c")


class Subscription(graphene.ObjectType):  # type: ignore[misc]
    sync = sync_field()


class Query(graphene.ObjectType):  # type: ignore[misc]
    hello = graphene.String()


GRAPHENE = graphene.Schema(query=Query, subscription=Subscription).graphql_schema
STRAWBERRY = build_schema()


class Messages:
    """The `SyncService.sync` seam, answering with fixed messages."""

    def __init__(self, messages: list[SyncMessage]) -> None:
        self.messages = messages

    async def sync(self, *_args: Any) -> AsyncIterator[SyncMessage]:
        async def stream() -> AsyncIterator[SyncMessage]:
            for message in self.messages:
                yield message

        return stream()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6,
)
rows = st.dictionaries(st.sampled_from(["id", "title", "n"]), json_values, min_size=1)
changes = st.builds(
    WireChange,
    op=st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
    key=st.fixed_dictionaries({"id": st.integers(0, 99) | st.text(max_size=4)}),
    row=st.none() | rows,
)
messages = st.builds(
    SyncMessage,
    changes=st.lists(changes, max_size=4).map(tuple),
    cursor=st.none() | st.from_regex(r"[0-9]{1,5}-[0-9]", fullmatch=True),
    up_to_date=st.booleans(),
    must_refetch=st.booleans(),
    types=st.none() | st.dictionaries(st.sampled_from(["id", "title"]), st.sampled_from(
        ["int8", "text"])),
    confirmed=st.none() | st.builds(
        Confirmed,
        last_mutation_id=st.integers(1, 2**31 - 1),
        status=st.sampled_from(["ok", "refused", "error", "duplicate"]),
        message=st.none() | st.text(max_size=5),
        owner=st.just("u1"),
        failed=st.lists(st.builds(
            Failure,
            id=st.integers(1, 2**31 - 1),
            status=st.sampled_from(["refused", "error"]),
            message=st.none() | st.text(max_size=5),
        ), max_size=3).map(tuple),
    ),
)


@st.composite
def directive(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["", "", "@skip", "@include"]))
    if not kind:
        return ""
    value = draw(st.sampled_from(["true", "false", "$yes", "$no"]))
    return f" {kind}(if: {value})"


@st.composite
def selection(draw: st.DrawFn, fields: tuple[str, ...], inner: dict[str, str],
              type_name: str) -> str:
    """A selection set body over `fields` (an object field gets its body in `inner`)."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        name = draw(st.sampled_from(fields))
        alias = draw(st.sampled_from(("", *ALIASES)))
        head = f"{name}_{alias}: {name}" if alias else name
        body = f" {{ {inner[name]} }}" if name in inner else ""
        field = f"{head}{draw(directive())}{body}"
        wrap = draw(st.sampled_from(["plain", "plain", "inline", "typed"]))
        if wrap == "inline":
            field = f"... {draw(directive())} {{ {field} }}"
        elif wrap == "typed":
            field = f"... on {type_name} {{ {field} }}"
        parts.append(field)
    return " ".join(parts)


@st.composite
def documents(draw: st.DrawFn) -> str:
    change_body = draw(selection(CHANGE_FIELDS, {}, "Change"))
    failed_body = draw(selection(FAILED_FIELDS, {}, "FailedMutation"))
    confirmed_body = draw(selection(CONFIRMED_FIELDS, {"failed": failed_body}, "Confirmed"))
    message_body = draw(selection(
        MESSAGE_FIELDS, {"changes": change_body, "confirmed": confirmed_body}, "SyncMessage"
    ))
    sync_alias = draw(st.sampled_from(["", "live: "]))
    use_fragment = draw(st.booleans())
    spread = " ...More" if use_fragment else ""
    fragment = (
        f" fragment More on SyncMessage {{ cursor{draw(directive())} }}" if use_fragment else ""
    )
    return (
        "subscription S($q: String!, $yes: Boolean! = true, $no: Boolean!) "
        # The last field uses both variables (an unused one makes the document invalid).
        f"{{ {sync_alias}sync(query: $q) {{ {message_body}{spread} "
        "upToDate @skip(if: $no) @include(if: $yes) } }"
        f"{fragment}"
    )


def context(stream: list[SyncMessage]) -> dict[str, Any]:
    return {"service": Messages(stream), "claims": {}, "budget": None}


async def graphene_results(query: str, variables: dict[str, Any],
                           stream: list[SyncMessage]) -> list[str]:
    results = await subscribe(GRAPHENE, parse(query), variable_values=variables,
                              context_value=context(stream), operation_name="S")
    assert not isinstance(results, ExecutionResult), results
    out = []
    async for result in results:
        assert result.errors is None, result.errors
        out.append(encode({"data": result.data}))
    return out


async def strawberry_results(query: str, variables: dict[str, Any],
                             stream: list[SyncMessage]) -> list[str]:
    results = await STRAWBERRY.subscribe(query, variable_values=variables,
                                         context_value=context(stream), operation_name="S")
    out = []
    async for result in results:  # type: ignore[union-attr]
        assert result.errors is None, result.errors
        out.append(encode({"data": result.data}))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=documents(), stream=st.lists(messages, min_size=1, max_size=3),
       no=st.booleans())
def test_compiled_payloads_equal_graphql_execution(
    query: str, stream: list[SyncMessage], no: bool
) -> None:
    document = parse(query)
    assume(not validate(GRAPHENE, document))  # e.g. an alias used for two different fields
    variables = {"q": "SELECT 1", "no": no}
    for schema in (GRAPHENE, STRAWBERRY._schema):
        plan = plan_sync(schema, document, "S", variables)
        assert plan is not None
        assert plan.arguments["query"] == "SELECT 1"
        compiled = [plan.serializer.payload_json(m) for m in stream]
        expected = asyncio.run(
            graphene_results(query, variables, stream) if schema is GRAPHENE
            else strawberry_results(query, variables, stream)
        )
        assert compiled == expected


def test_equal_selections_share_one_encoding() -> None:
    query = parse("subscription ($q: String!) { sync(query: $q) { cursor upToDate } }")
    other = parse("subscription ($q: String!) { sync(query: $q) { cursor, upToDate } }")
    first = plan_sync(GRAPHENE, query, None, {"q": "a"})
    second = plan_sync(GRAPHENE, other, None, {"q": "b"})
    assert first is not None and second is not None
    assert first.serializer is second.serializer  # one per distinct selection
    message = SyncMessage((), "5-0", up_to_date=True)
    assert first.serializer.payload_json(message) is second.serializer.payload_json(message)
    assert next_frame("op 1", '{"data":null}') == (
        '{"id":"op 1","type":"next","payload":{"data":null}}'
    )


def test_other_operations_are_not_planned() -> None:
    def plan(query: str, variables: dict[str, Any] | None = None) -> object:
        return plan_sync(GRAPHENE, parse(query), None, variables)

    assert plan("{ hello }") is None
    assert plan("subscription { sync(query: $q) { cursor } }") is None  # $q undefined
    assert plan("subscription ($q: String!) { sync(query: $q) { cursor } }") is None  # no $q
    skipped = "subscription ($q: String!) { sync(query: $q) @skip(if: true) { cursor } }"
    assert plan(skipped, {"q": "x"}) is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_encode_is_compact_json_dumps(value: Any) -> None:
    """The encoder built once writes what `json.dumps` writes, escapes and NaN included."""
    assert encode(value) == json.dumps(value, separators=(",", ":"))
