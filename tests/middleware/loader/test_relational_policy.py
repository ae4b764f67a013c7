"""A policy reading an inner select: the loader's answers follow the memberships it reads.

Whether a caller may see a row then depends on other rows (grants), which the
row cache is not keyed by: such loads are judged by Postgres in the statement
and never answered from the cache, so a moved membership shows at once.
"""

from __future__ import annotations

import psycopg

from pgsift.subscriptions import Catalog, policies_from_config
from tests.middleware.loader.conftest import ITEM_COLUMNS, LoaderFactory

CATALOG = Catalog.from_dict(
    {
        "public.items": {"columns": ITEM_COLUMNS, "primary_key": ["id"]},
        "public.grants": {"columns": {"team_id": "int4", "user_id": "text"},
                          "primary_key": ["team_id", "user_id"]},
    }
)  # fmt: skip
RULE = "team_id IN (SELECT team_id FROM grants WHERE user_id = auth.sub)"


async def test_a_moved_membership_shows_in_the_next_load(
    make_loader: LoaderFactory, items_url: str
) -> None:
    with psycopg.connect(items_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE grants (team_id int4, user_id text, PRIMARY KEY (team_id, user_id))"
        )
        policies = policies_from_config(
            {"items": {"columns": ["id", "title"], "row": RULE}, "grants": {}}, catalog=CATALOG
        )
        loader = await make_loader(catalog=CATALOG, policies=policies)
        keys = [3, 4]  # team_id = id % 3: 0, 1
        u1 = {"sub": "u1"}
        assert await loader.load_many("items", keys, u1) == [None, None]
        conn.execute("INSERT INTO grants VALUES (0, 'u1')")
        assert await loader.load_many("items", keys, u1) == [{"id": 3, "title": "item 3"}, None]
        # Another caller's rows fill the cache meanwhile; u1's answer is not taken from it.
        conn.execute("INSERT INTO grants VALUES (1, 'u2')")
        assert await loader.load_many("items", keys, {"sub": "u2"}) == [
            None,
            {"id": 4, "title": "item 4"},
        ]
        conn.execute("UPDATE grants SET team_id = 1 WHERE user_id = 'u1'")
        assert await loader.load_many("items", keys, u1) == [None, {"id": 4, "title": "item 4"}]
        conn.execute("DELETE FROM grants WHERE user_id = 'u1'")
        assert await loader.load_many("items", keys, u1) == [None, None]
        assert loader.stats.cache_hits == 0
