"""Keys of every shape, and a bad request failing alone, never its batch."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.errors import LoaderError
from pgsift.subscriptions.catalog import Catalog
from tests.middleware.loader.conftest import CATALOG, ORG, LoaderFactory, StatementLog


async def test_composite_keys_as_objects(
    make_loader: LoaderFactory, statement_log: StatementLog | None
) -> None:
    loader = await make_loader(window_s=0.05)
    asks = [
        [{"org_id": str(ORG), "user_id": 1}, {"org_id": str(ORG), "user_id": 9}],
        [{"user_id": 2, "org_id": ORG}, {"org_id": str(ORG), "user_id": 1}],
    ]

    first, second = await asyncio.gather(
        *(loader.load_many("public.memberships", keys, {}, ["user_id", "role"]) for keys in asks)
    )

    assert first == [{"user_id": 1, "role": "owner"}, None]
    assert second == [{"user_id": 2, "role": "member"}, {"user_id": 1, "role": "owner"}]
    assert loader.stats.statements == 1
    if statement_log is not None:
        assert statement_log.count('FROM "public"."memberships"') == 1


async def test_single_keys_typed_from_json(make_loader: LoaderFactory) -> None:
    loader = await make_loader()
    assert await loader.load("items", {"id": 5}, {}, ["id"]) == {"id": 5}
    assert await loader.load("labels", "bug", {}) == {"kind": "bug", "color": "red"}
    assert await loader.load("labels", "feature", {}) is None


@pytest.mark.parametrize(
    ("table", "key", "columns", "message"),
    [
        ("nope", 1, None, "unknown table 'nope'"),
        ("items", "seven", None, "key #0 of public.items: id"),
        ("items", True, None, "key #0 of public.items: id"),
        ("items", None, None, "id must not be null"),
        ("items", {"id": 1, "x": 2}, None, "must have exactly the fields id"),
        ("memberships", 1, None, "send an object with those fields"),
        ("memberships", {"org_id": "not-a-uuid", "user_id": 1}, None, "org_id"),
        ("items", 1, ["title", "nope"], "public.items has no column 'nope'"),
        ("labels", "nope", None, "'nope' is not a label of label_kind"),
        ("memberships", {"org_id": str(ORG), "user_id": 2**31}, None, "out of range"),
        ("items_text", "a\x00b", None, "U+0000"),
        ("items_text", "a\ud800", None, "lone surrogate"),
    ],
)
async def test_bad_requests_fail_alone(
    make_loader: LoaderFactory, table: str, key: Any, columns: list[str] | None, message: str
) -> None:
    loader = await make_loader(window_s=0.05)

    good, bad = await asyncio.gather(
        loader.load("items", 1, {}, ["title"]),
        loader.load(table, key, {}, columns),
        return_exceptions=True,
    )

    assert good == {"title": "item 1"}
    assert isinstance(bad, LoaderError)
    assert message in str(bad)


async def test_keys_in_order_with_duplicates_and_missing(make_loader: LoaderFactory) -> None:
    loader = await make_loader()
    rows = await loader.load_many("items", [3, 3, 1000, 2, 3], {}, ["id"])
    assert rows == [{"id": 3}, {"id": 3}, None, {"id": 2}, {"id": 3}]
    assert await loader.load_many("items", [], {}) == []
    assert loader.stats.keys_fetched == 3


async def test_a_value_postgres_refuses_fails_only_its_callers(
    make_loader: LoaderFactory,
) -> None:
    # Without the enum's labels in the catalog, a bad label reaches Postgres and fails
    # the statement: the loader asks again key by key.
    catalog = Catalog.from_dict({"public.labels": CATALOG.to_dict()["public.labels"]})
    loader = await make_loader(catalog=catalog, window_s=0.05)

    good, bad, missing = await asyncio.gather(
        loader.load("labels", "bug", {}),
        loader.load("labels", "nope", {}),
        loader.load("labels", "feature", {}),
        return_exceptions=True,
    )

    assert good == {"kind": "bug", "color": "red"}
    assert missing is None
    assert isinstance(bad, LoaderError)
    assert "invalid input value for enum label_kind" in str(bad)
    assert loader.stats.statements == 1 + 3


async def test_with_the_catalog_read_from_postgres(
    make_loader: LoaderFactory, items_url: str
) -> None:
    with psycopg.connect(items_url) as conn:
        catalog = load_catalog(conn)
    loader = await make_loader(catalog=catalog, window_s=0.05)

    items, members, labels = await asyncio.gather(
        loader.load_many("items", [1, 2], {}, ["title"]),
        loader.load("memberships", {"org_id": str(ORG), "user_id": 1}, {}, ["role"]),
        loader.load("labels", "bug", {}),
    )

    assert items == [{"title": "item 1"}, {"title": "item 2"}]
    assert members == {"role": "owner"}
    assert labels == {"kind": "bug", "color": "red"}
