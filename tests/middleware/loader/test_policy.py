"""Batch across callers, filter per caller: one statement, each sees only its rows."""

from __future__ import annotations

import asyncio

import pytest

from pgsift.middleware.errors import LoaderError, LoaderForbiddenError
from pgsift.middleware.loader import BatchLoader
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.errors import PolicyError
from pgsift.subscriptions.shape import Shape
from tests.middleware.loader.conftest import (
    CATALOG,
    ORG,
    POLICIES,
    LoaderFactory,
    StatementLog,
)


async def test_each_caller_of_one_batch_sees_only_its_rows(
    make_loader: LoaderFactory, statement_log: StatementLog | None
) -> None:
    loader = await make_loader(policies=POLICIES, window_s=0.05)
    keys = [3, 4, 5, 6, 404]  # team_id = id % 3: 0, 1, 2, 0, -

    team0, team1, both, nobody = await asyncio.gather(
        loader.load_many("items", keys, {"team_ids": [0]}),
        loader.load_many("items", keys, {"team_ids": [1]}, ["title"]),
        loader.load_many("items", keys, {"team_ids": [0, 1]}, ["id"]),
        loader.load_many("items", keys, {"team_ids": []}),
    )

    assert team0 == [
        {"id": 3, "team_id": 0, "title": "item 3"}, None, None,
        {"id": 6, "team_id": 0, "title": "item 6"}, None,
    ]
    assert team1 == [None, {"title": "item 4"}, None, None, None]
    assert both == [{"id": 3}, {"id": 4}, None, {"id": 6}, None]
    assert nobody == [None] * 5  # forbidden and missing look the same
    assert loader.stats.statements == 1
    if statement_log is not None:
        assert statement_log.count('FROM "public"."items"') == 1


async def test_cached_rows_are_filtered_per_caller_too(make_loader: LoaderFactory) -> None:
    loader = await make_loader(policies=POLICIES)
    assert await loader.load("items", 3, {"team_ids": [0]}, ["id"]) == {"id": 3}
    assert await loader.load("items", 3, {"team_ids": [1]}, ["id"]) is None
    assert loader.stats.statements == 1


async def test_forbidden_column_fails_that_caller_only(make_loader: LoaderFactory) -> None:
    loader = await make_loader(policies=POLICIES, window_s=0.05)

    good, bad = await asyncio.gather(
        loader.load("items", 3, {"team_ids": [0]}, ["title"]),
        loader.load("items", 3, {"team_ids": [0]}, ["title", "secret"]),
        return_exceptions=True,
    )

    assert good == {"title": "item 3"}
    assert isinstance(bad, LoaderError)
    with pytest.raises(LoaderError, match=r"column 'secret' of public\.items is not readable"):
        raise bad


async def test_a_missing_claim_is_an_error_for_that_caller(make_loader: LoaderFactory) -> None:
    loader = await make_loader(policies=POLICIES)
    with pytest.raises(LoaderError, match="team_ids"):
        await loader.load("items", 3, {"sub": "x"})
    assert await loader.load("memberships", {"org_id": str(ORG), "user_id": 1}, {}) is not None


async def test_a_null_claim_is_an_error_for_that_caller(make_loader: LoaderFactory) -> None:
    loader = await make_loader(policies=POLICIES)
    with pytest.raises(LoaderError, match="claim 'team_ids' is null"):
        await loader.load("items", 3, {"team_ids": None})


async def test_a_table_without_a_policy_is_refused_as_shape_parse_refuses_it(
    make_loader: LoaderFactory,
) -> None:
    """With policies configured, a table none is for is not readable: not its rows,
    not even whether a key exists (as `Shape.parse` refuses a subscription to it)."""
    loader = await make_loader(policies=POLICIES)
    with pytest.raises(PolicyError, match=r"no policy allows reading public\.items_text"):
        Shape.parse("SELECT name FROM items_text", catalog=CATALOG, policies=POLICIES)
    with pytest.raises(
        LoaderForbiddenError, match=r"no policy allows reading public\.items_text"
    ):
        await loader.load_many("items_text", ["a"], {"team_ids": [0]})
    with pytest.raises(LoaderForbiddenError):
        await loader.load("public.labels", "bug", {})
    # Without any policies every table is readable (no auth configured).
    open_loader = await make_loader()
    assert await open_loader.load_many("items_text", ["nope"], {}) == [None]


async def test_from_settings_reads_the_policies_table(items_url: str) -> None:
    settings = Settings(
        database_url=items_url,
        loader_window_ms=20.0,
        policies={"public.items": {"columns": ["id", "title"], "row": "id < auth.below"}},
    )
    loader = await BatchLoader.from_settings(settings)  # the catalog read from Postgres
    try:
        rows = await loader.load_many("items", [1, 9], {"below": 5})
    finally:
        await loader.close()
    assert rows == [{"id": 1, "title": "item 1"}, None]
