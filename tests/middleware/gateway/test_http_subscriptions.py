"""Telling a subscription sent over HTTP from a query or mutation (pure: no server)."""

from __future__ import annotations

import json

import pytest

from pgsift.middleware.gateway.http_subscriptions import (
    SUBSCRIPTION_OVER_HTTP,
    is_subscription,
    refusal,
)

SYNC = 'subscription Live { sync(query: "SELECT id FROM issues") { cursor } }'
ROWS = 'query Rows { rows(table: "issues", keys: [1]) }'
MAX_TOKENS = 1_000


@pytest.mark.parametrize(("query", "operation_name", "expected"), [
    (SYNC, None, True),
    ('subscription { sync(query: "SELECT 1") { cursor } }', None, True),
    (ROWS, None, False),
    ("mutation { mutate(name: \"x\") }", None, False),
    ("{ rows }", None, False),
    # In a document of several operations, the one the request names counts.
    (f"{SYNC} {ROWS}", "Rows", False),
    (f"{SYNC} {ROWS}", "Live", True),
    # Which one cannot be told: the view's execution reports it.
    (f"{SYNC} {ROWS}", None, False),
    (SYNC, "Other", False),
    # Not a document, or past the token bound: the same.
    ("subscription {", None, False),
    ("", None, False),
    (None, None, False),
    ("subscription { " + "a " * MAX_TOKENS + "}", None, False),
])
def test_is_subscription(query: str | None, operation_name: str | None, expected: bool) -> None:
    assert is_subscription(query, operation_name, MAX_TOKENS) is expected


def test_the_refusal_is_a_graphql_result_with_status_400() -> None:
    response = refusal()
    assert response.status_code == 400
    assert json.loads(response.body) == {"data": None, "errors": [{
        "message": SUBSCRIPTION_OVER_HTTP, "extensions": {"code": "SubscriptionOverHTTP"},
    }]}
