"""Shapes parsed once for the subscriptions that ask for the same one (bounded LRU).

Parsing a `sync` query (SQL grammar, the catalog, the policy of its table, the
claims it reads) costs a fraction of a millisecond, and a `Shape` holds its
template, params and index terms. Subscriptions to one shape (the same query
text and params, by the same claims) are common: many clients on one list, one
client resubscribing after a reconnect. A `ShapeCache` keeps the `size` shapes
parsed last: those subscriptions share one `Shape` object (nothing in a shape
changes once made) instead of each parsing and holding its own.

The key is the query text, the params as JSON (`1`, `1.0` and `true` differ,
which Python's equality would not tell apart) and the claims as JSON: claims can
be read by a policy, so a shape parsed for one caller is only ever reused for
the same claims. Every shape was made against one catalog: a new catalog (a
schema change) empties the cache. Failures (QueryError, PolicyError) are not
kept; neither are queries or params too big to be worth a key
(`MAX_KEY_CHARS`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape

# Distinct shapes kept.
DEFAULT_SIZE = 256
# Keys longer than this (query + params + claims) are not kept: memory stays bounded.
MAX_KEY_CHARS = 4096

Key = tuple[str, str, str]


class ShapeCache:
    """The shapes made last, by (query, params, claims), for one catalog."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._catalog: Catalog | None = None
        self._shapes: OrderedDict[Key, Shape] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(query: str, params: list[Any], claims: Mapping[str, Any]) -> Key | None:
        """The cache key, or None when the request is not to be kept."""
        try:
            key = (
                query,
                json.dumps(params, separators=(",", ":")),
                json.dumps(claims, separators=(",", ":"), sort_keys=True),
            )
        except (TypeError, ValueError):
            return None  # not plain JSON (claims from a custom authenticator): not kept
        if sum(map(len, key)) > MAX_KEY_CHARS:
            return None
        return key

    def get(self, catalog: Catalog, key: Key | None) -> Shape | None:
        if key is None:
            return None
        if catalog is not self._catalog:
            self._catalog = catalog
            self._shapes.clear()
        shape = self._shapes.get(key)
        if shape is None:
            self.misses += 1
            return None
        self._shapes.move_to_end(key)
        self.hits += 1
        return shape

    def put(self, catalog: Catalog, key: Key | None, shape: Shape) -> None:
        """Keep `shape`, made against `catalog`, under `key` (None: not kept)."""
        if key is None or catalog is not self._catalog:
            return  # made against a catalog replaced meanwhile: not kept
        self._shapes[key] = shape
        if len(self._shapes) > self.size:
            self._shapes.popitem(last=False)

    def __len__(self) -> int:
        return len(self._shapes)
