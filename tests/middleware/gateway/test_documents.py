"""The document cache: each distinct text parsed and validated once, bounded, on both schemas."""

from __future__ import annotations

import graphene  # type: ignore[import-untyped]

from pgsift.middleware.gateway.documents import MAX_CACHED_CHARS, DocumentCache
from pgsift.middleware.gateway.graphene_adapter import sync_field
from pgsift.middleware.gateway.schema import build_schema

SYNC = "subscription ($q: String!) { sync(query: $q) { cursor upToDate } }"


class Subscription(graphene.ObjectType):  # type: ignore[misc]
    sync = sync_field()


class Query(graphene.ObjectType):  # type: ignore[misc]
    hello = graphene.String()


GRAPHENE = graphene.Schema(query=Query, subscription=Subscription).graphql_schema


def test_a_text_is_parsed_and_validated_once() -> None:
    cache = DocumentCache(GRAPHENE, max_tokens=100)
    first = cache.check(SYNC)
    assert first.document is not None and first.errors == () and first.syntax_error is None
    assert cache.check(SYNC) is first
    assert (cache.hits, cache.misses) == (1, 1)


def test_syntax_and_validation_errors_are_kept_too() -> None:
    cache = DocumentCache(GRAPHENE, max_tokens=100)
    broken = cache.check("subscription { sync(")
    assert broken.document is None and broken.syntax_error is not None
    invalid = cache.check("subscription { nope }")
    assert invalid.document is not None
    assert [e.message for e in invalid.errors] == [
        "Cannot query field 'nope' on type 'Subscription'."
    ]
    assert cache.check("subscription { nope }") is invalid


def test_the_token_limit_applies() -> None:
    cache = DocumentCache(GRAPHENE, max_tokens=5)
    checked = cache.check(SYNC)
    assert checked.syntax_error is not None and "more than 5 tokens" in checked.syntax_error.message


def test_the_least_recently_used_text_goes_first() -> None:
    cache = DocumentCache(GRAPHENE, max_tokens=None, size=2)
    a, b, c = (f"query {name} {{ hello }}" for name in "ABC")
    kept_a = cache.check(a)
    cache.check(b)
    assert cache.check(a) is kept_a  # a is now the most recent: b goes next
    cache.check(c)
    assert cache.check(a) is kept_a
    misses = cache.misses
    cache.check(b)
    assert cache.misses == misses + 1


def test_long_texts_are_checked_but_not_kept() -> None:
    cache = DocumentCache(GRAPHENE, max_tokens=None)
    long = "query { hello } # " + "x" * MAX_CACHED_CHARS
    assert cache.check(long).errors == ()
    assert cache.check(long).errors == ()
    assert cache.misses == 2


async def test_the_strawberry_schema_validates_a_text_once() -> None:
    schema = build_schema()
    for _ in range(3):
        result = await schema.execute("{ __typename }")
        assert result.errors is None and result.data == {"__typename": "Query"}
    assert schema.documents.misses == 1
    bad = await schema.execute("{ nope }")
    assert bad.errors and "Cannot query field 'nope'" in bad.errors[0].message
