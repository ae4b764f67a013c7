"""Hash-bucket keys of column values, as routing files and looks them up (`bucket_key`),
and the choice of the index term a shape is filed under (`choose_term`).

Bucket keys follow Postgres equality, not Python's, where the two differ in the
direction that would lose events: NaN equals NaN (float and numeric), a
`bpchar` value equals itself without trailing blanks. Buckets may be coarser
than Postgres (`'a '` and `'a'`, jsonb `true` and `1` share one): the full
predicate runs on every candidate anyway.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pgsift.subscriptions.domains import NAN

# Postgres finds `'NaN' = 'NaN'` true: every NaN, float or numeric, has this one
# key -- the very object shapes key NaN constants with.
NAN_KEY = NAN


def bucket_key(value: Any) -> Hashable:
    """The hash-bucket key of a non-NULL column value; TypeError if it has none."""
    kind = type(value)
    if kind is int or kind is bool:
        return value  # type: ignore[no-any-return]
    if kind is str:
        # bpchar compares without trailing blanks; for text this is only coarser.
        return value.rstrip(" ")  # type: ignore[no-any-return]
    if kind is float:
        return NAN_KEY if value != value else value
    if kind is Decimal:
        return NAN_KEY if value.is_nan() else value
    if kind is list:
        return ("[]", tuple(map(bucket_key, value)))
    if kind is dict:
        return ("{}", frozenset((k, bucket_key(v)) for k, v in value.items()))
    hash(value)  # the TypeError of an unhashable value
    return value  # type: ignore[no-any-return]


def term_keys(values: Iterable[Any]) -> frozenset[Hashable]:
    """The bucket keys of an index term's values; TypeError if one has none."""
    # NULL never equals anything, so a NULL in `IN (...)` can be left out.
    return frozenset(bucket_key(v) for v in values if v is not None)


def choose_term(
    filed: Mapping[str, Mapping[Hashable, object]],
    index_terms: Sequence[tuple[str, frozenset[Any]]],
) -> tuple[int, frozenset[Hashable], tuple[float, int]]:
    """The most selective of `index_terms`, or -1 if none has keys; its keys and rank.

    A term is as selective as the fraction of changes that will hit one of
    its buckets. Without data statistics, estimate that by its number of
    values over the number of distinct values the column has among the
    shapes filed so far (`filed`: column -> bucket key -> shapes):
    `team_id = 7` beats `status IN ('open', 'todo')` once several teams are
    registered. Ties go to fewer values, then to the earlier term.
    """
    best, best_keys, best_rank = -1, frozenset[Hashable](), (float("inf"), 0)
    for i, (column, values) in enumerate(index_terms):
        try:
            keys = term_keys(values)
        except TypeError:
            continue
        buckets = filed.get(column, {})
        distinct = len(buckets) + sum(1 for key in keys if key not in buckets)
        rank = (len(keys) / max(distinct, 1), len(keys))
        if rank < best_rank:
            best, best_keys, best_rank = i, keys, rank
    return best, best_keys, best_rank
