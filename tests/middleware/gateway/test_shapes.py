"""The shape cache: one shape per (query, params, claims) and catalog, the last `size`."""

from __future__ import annotations

from typing import Any

import psycopg

from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.gateway.shapes import MAX_KEY_CHARS, ShapeCache
from pgsift.subscriptions.shape import Shape

QUERY = "SELECT id, title FROM issues WHERE team_id = $1"


def test_keys_tell_apart_what_equality_would_not() -> None:
    keys = {ShapeCache.key(QUERY, [p], {}) for p in (1, 1.0, True, "1")}
    assert len(keys) == 4
    assert ShapeCache.key(QUERY, [1], {"sub": "a"}) != ShapeCache.key(QUERY, [1], {"sub": "b"})
    # Claims in any order are the same claims.
    assert ShapeCache.key(QUERY, [], {"a": 1, "b": 2}) == ShapeCache.key(
        QUERY, [], {"b": 2, "a": 1}
    )
    assert ShapeCache.key(QUERY, [], {"when": object()}) is None
    assert ShapeCache.key(QUERY, ["x" * MAX_KEY_CHARS], {}) is None


def test_shapes_are_kept_per_catalog_and_the_last_ones_only(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS issues (id int PRIMARY KEY, team_id int, "
                     "title text)")
        conn.commit()
        catalog, newer = load_catalog(conn), load_catalog(conn)
    cache = ShapeCache(size=2)

    def parsed(team: Any) -> Shape:
        return Shape.parse(QUERY, params=[team], catalog=catalog)

    keys = [ShapeCache.key(QUERY, [team], {}) for team in (1, 2, 3)]
    assert cache.get(catalog, keys[0]) is None
    one = parsed(1)
    cache.put(catalog, keys[0], one)
    assert cache.get(catalog, keys[0]) is one
    assert cache.get(catalog, keys[1]) is None
    cache.put(catalog, keys[1], parsed(2))
    cache.get(catalog, keys[0])  # used last: kept
    cache.put(catalog, keys[2], parsed(3))
    assert cache.get(catalog, keys[1]) is None  # the least recently used went
    assert cache.get(catalog, keys[0]) is one
    # A new catalog (a schema change): nothing made against the old one is used.
    assert cache.get(newer, keys[0]) is None
    assert len(cache) == 0
    cache.put(catalog, keys[0], one)  # made against the old one meanwhile: not kept
    assert cache.get(newer, keys[0]) is None
