"""`plan_sync` compiles an operation once and reuses it for the next subscription that
sends the same document: each still gets its own variables, a selection that reads
variables is compiled for each, and variables that do not coerce still get no plan."""

from __future__ import annotations

from typing import Any

from graphql import parse

from pgsift.middleware.gateway.client import SYNC_SUBSCRIPTION
from pgsift.middleware.gateway.messages import SyncMessage, WireChange
from pgsift.middleware.gateway.schema import build_schema
from pgsift.middleware.gateway.sync_plan import plan_sync

SCHEMA = build_schema()._schema
QUERY = "SELECT id FROM items WHERE bucket = $1"
MESSAGE = SyncMessage((WireChange("INSERT", {"id": "1"}, {"id": "1"}),), None, up_to_date=False)


def fresh(document_text: str, variables: dict[str, Any]) -> Any:
    """The plan of a document never seen before (not from the cache)."""
    plan = plan_sync(SCHEMA, parse(document_text), None, variables)
    return None if plan is None else (plan.arguments, plan.serializer.data(MESSAGE))


def test_each_subscription_of_a_cached_operation_gets_its_own_variables() -> None:
    document = parse(SYNC_SUBSCRIPTION)
    for variables in (
        {"query": QUERY, "params": [1]},
        {"query": QUERY, "params": [True], "cursor": "0/1-0"},
        {"query": QUERY, "params": [1.5, "x", None, {"a": [1]}], "cursor": None},
        {"query": QUERY},
    ):
        plan = plan_sync(SCHEMA, document, None, variables)
        assert plan is not None
        assert (plan.arguments, plan.serializer.data(MESSAGE)) == fresh(
            SYNC_SUBSCRIPTION, variables
        )
    assert plan_sync(SCHEMA, document, None, {"params": [1]}) is None  # query missing
    assert plan_sync(SCHEMA, document, None, {"query": 3}) is None  # not a String
    assert plan_sync(SCHEMA, document, None, {"query": QUERY, "cursor": 5}) is None


def test_a_selection_that_reads_variables_follows_them() -> None:
    text = """subscription S($query: String!, $withRow: Boolean!) {
      sync(query: $query) { changes { op row @include(if: $withRow) } cursor }
    }"""
    document = parse(text)
    for with_row in (True, False, True):
        variables = {"query": QUERY, "withRow": with_row}
        plan = plan_sync(SCHEMA, document, None, variables)
        assert plan is not None
        data = plan.serializer.data(MESSAGE)
        assert ("row" in data["sync"]["changes"][0]) is with_row
        assert (plan.arguments, data) == fresh(text, variables)
