"""Hash-bucket keys of column values, as routing files and looks them up (`bucket_key`).

Bucket keys follow Postgres equality, not Python's, where the two differ in the
direction that would lose events: NaN equals NaN (float and numeric), a
`bpchar` value equals itself without trailing blanks. Buckets may be coarser
than Postgres (`'a '` and `'a'`, jsonb `true` and `1` share one): the full
predicate runs on every candidate anyway.
"""

from __future__ import annotations

from collections.abc import Hashable
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
