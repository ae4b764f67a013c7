"""Shapes parsed once for the subscriptions that ask for the same one (bounded LRU).

Parsing a `sync` query (SQL grammar, the catalog, the policy of its table, the
claims it reads) costs a fraction of a millisecond, and a `Shape` holds its
template, params and index terms. Subscriptions to one shape (the same query
text and params, by the same claims) are common: many clients on one list, one
client resubscribing after a reconnect. A `ShapeCache` keeps the `size` shapes
parsed last: those subscriptions share one `Shape` object (nothing in a shape
changes once made) instead of each parsing and holding its own.

The key is the query text, the params as JSON (`1`, `1.0` and `true` differ,
which Python's equality would not tell apart) and, as JSON, the claims a shape
can read: those the policies name (`auth.<claim>`, found by parsing their row
rules once, `claims_named`), or every claim when the query itself mentions
`auth`. Two callers whose tokens differ only in claims no policy reads (`exp`,
`iat`, `jti`: every token) share one shape; a shape parsed for one caller is
only ever reused for the same values of the claims it can read. Every shape
was made against one catalog: a new catalog (a schema change) empties the cache.
Failures (QueryError, PolicyError) are not kept; neither are queries or params
too big to be worth a key (`MAX_KEY_CHARS`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from sqlglot import exp

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.parse import identifier_name, parse_condition
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.shape import Shape

# Distinct shapes kept.
DEFAULT_SIZE = 256
# Keys longer than this (query + params + claims) are not kept: memory stays bounded.
MAX_KEY_CHARS = 4096

Key = tuple[str, str, str]


def claims_named(policies: Mapping[str, Policy] | None) -> frozenset[str] | None:
    """The claims the policies' row rules read (`auth.<claim>`); None when that cannot
    be told for sure (a rule names `auth` other than as `auth.<claim>`)."""
    named: set[str] = set()
    for policy in (policies or {}).values():
        if policy.row is None:
            continue
        rule = parse_condition(policy.row)
        claim_columns = [
            column for column in rule.find_all(exp.Column)
            if identifier_name(column.args.get("table")) == "auth"
        ]
        named.update(identifier_name(column.this) for column in claim_columns)
        mentions = sum(identifier_name(node) == "auth" for node in rule.find_all(exp.Identifier))
        if mentions != len(claim_columns):
            return None
    return frozenset(named)


class ShapeCache:
    """The shapes made last, by (query, params, the claims they can read), for one catalog.

    `read_claims`: the claims the policies read (`claims_named`); None keys on all claims.
    """

    def __init__(
        self, size: int = DEFAULT_SIZE, read_claims: frozenset[str] | None = None
    ) -> None:
        self.size = size
        self.read_claims = read_claims
        self._catalog: Catalog | None = None
        self._shapes: OrderedDict[Key, Shape] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def key(self, query: str, params: list[Any], claims: Mapping[str, Any]) -> Key | None:
        """The cache key, or None when the request is not to be kept."""
        lowered = query.lower()
        # `u&"..."` could spell `auth` with escapes (sqlglot keeps them; kept out anyway).
        if self.read_claims is not None and "auth" not in lowered and 'u&"' not in lowered:
            # A claim the caller lacks stays out of the key, so it differs from one that has it.
            claims = {name: claims[name] for name in self.read_claims if name in claims}
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
