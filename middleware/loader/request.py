"""Checking one caller's load: table, columns and keys, against catalog and policy.

Everything a caller can get wrong is found here, before its keys join a batch,
so that a bad request fails alone and never the batch other callers share.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.errors import LoaderError, LoaderForbiddenError, TooManyKeysError
from pgsift.middleware.loader.cache import Row, RowKey
from pgsift.subscriptions import wire
from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.coerce import check_sendable
from pgsift.subscriptions.errors import PgsiftError, PolicyError
from pgsift.subscriptions.policy import BoundPolicy, Policy, policy_for


@dataclass(frozen=True, slots=True)
class LoadRequest:
    """One caller's load, checked: the table, the columns it gets, its bound policy."""

    table: Table
    columns: tuple[str, ...]
    policy: BoundPolicy | None  # None: no policies configured, every row is readable
    catalog: Catalog

    def typed_key(self, index: int, key: Any) -> RowKey:
        """Key #`index` of the caller's keys, typed (`type_key`); LoaderError if it does not fit."""
        return type_key(self.table, key, index, self.catalog)

    @property
    def judged_in_sql(self) -> bool:
        """Whether the policy reads inner sets (`IN (SELECT ...)`): then Postgres judges
        it in the statement, at the moment it runs, instead of the cached rows."""
        return self.policy is not None and bool(self.policy.inner_sets)

    def sql_policy(self) -> tuple[str, list[Any]] | None:
        """The policy as SQL to AND into the load's statement, when it is judged there."""
        if self.policy is None or not self.judged_in_sql:
            return None
        return self.policy.to_sql_where()

    def visible(self, row: Row | None) -> Row | None:
        """The row as this caller may see it: projected, or None if not allowed (a row
        judged in SQL is allowed already)."""
        if row is None:
            return None
        if self.policy is not None and not self.judged_in_sql and not self.policy.matches(row):
            return None
        return {column: row[column] for column in self.columns}


class PolicyBinder:
    """Policies bound to claims, remembered: binding analyzes the rule's SQL each time."""

    def __init__(self, catalog: Catalog, policies: Mapping[str, Policy], *, size: int = 4096):
        self._catalog = catalog
        self.policies = policies
        self._size = size
        self._bound: OrderedDict[tuple[str, str], BoundPolicy] = OrderedDict()

    def bind(self, table: str, claims: Mapping[str, Any]) -> BoundPolicy | None:
        """`table`'s policy bound to `claims`; None when no policies are configured.
        With policies, a table none is for is refused, as `Shape.parse` refuses it."""
        try:
            policy = policy_for(self.policies, table)
        except PolicyError as exc:
            raise LoaderForbiddenError(str(exc)) from exc
        if policy is None:
            return None
        try:
            cache_key = (table, json.dumps(claims, sort_keys=True, default=repr))
        except (TypeError, ValueError) as exc:
            raise LoaderError(f"claims cannot be used by a policy: {exc}") from exc
        bound = self._bound.get(cache_key)
        if bound is None:
            try:
                bound = policy.bind(claims, catalog=self._catalog)
            except PgsiftError as exc:
                raise LoaderError(f"policy of {table}: {exc}") from exc
            self._bound[cache_key] = bound
            if len(self._bound) > self._size:
                self._bound.popitem(last=False)
        else:
            self._bound.move_to_end(cache_key)
        return bound


def check_key_count(count: int, limit: int, setting: str = "loader_max_keys") -> None:
    """TooManyKeysError when one request asks for more than `limit` keys."""
    if count > limit:
        raise TooManyKeysError(f"too many keys: {count} > {limit} ({setting})")


def prepare(
    catalog: Catalog,
    binder: PolicyBinder,
    table_name: str,
    claims: Mapping[str, Any],
    columns: Sequence[str] | None,
) -> LoadRequest:
    """Check a caller's table and columns against catalog and policy; LoaderError names
    what is wrong. Its keys are typed with `LoadRequest.typed_key`."""
    if not isinstance(table_name, str):
        raise LoaderError(f"table must be a string, not {type(table_name).__name__}")
    table = catalog.find(table_name)
    if table is None:
        raise LoaderError(f"unknown table {table_name!r}")
    policy = binder.bind(table.name, claims)
    allowed = table.columns if policy is None else policy.allowed_columns
    if columns is None:
        chosen = tuple(allowed)
    else:
        chosen = tuple(columns)
        for column in chosen:
            if not isinstance(column, str) or column not in table.columns:
                raise LoaderError(f"{table.name} has no column {column!r}")
            if column not in allowed:
                raise LoaderForbiddenError(f"column {column!r} of {table.name} is not readable")
    return LoadRequest(table=table, columns=chosen, policy=policy, catalog=catalog)


def type_key(table: Table, key: Any, index: int = 0, catalog: Catalog | None = None) -> RowKey:
    """A key as sent (JSON, or already typed) -> the primary key's Python values.

    Values Postgres would refuse in the statement (an unknown enum label, a NUL
    character) are refused here, so that they never fail a batch shared with others.
    """
    primary_key = table.primary_key
    if isinstance(key, dict) or (
        not isinstance(key, int | str) and isinstance(key, Mapping)
    ):
        if set(key) != set(primary_key):
            raise LoaderError(
                f"key #{index} of {table.name} must have exactly the fields "
                f"{', '.join(primary_key)}; got {', '.join(map(str, key)) or 'none'}"
            )
        raw = [key[column] for column in primary_key]
    elif len(primary_key) == 1:
        raw = [key]
    else:
        raise LoaderError(
            f"key #{index} of {table.name}: the primary key is ({', '.join(primary_key)}); "
            "send an object with those fields"
        )
    typed: list[Hashable] = []
    for column, value in zip(primary_key, raw, strict=True):
        type_name = table.columns[column]
        if value is None:
            raise LoaderError(f"key #{index} of {table.name}: {column} must not be null")
        try:
            converted = wire.from_json(type_name, value)
            check_sendable(type_name, converted)
            hash(converted)
        except (TypeError, ValueError) as exc:  # CoercionError too
            raise LoaderError(f"key #{index} of {table.name}: {column}: {exc}") from exc
        if isinstance(converted, str):
            _check_label(catalog, type_name, converted, f"key #{index} of {table.name}: {column}")
        typed.append(converted)
    return tuple(typed)


def row_key(table: Table, row: Mapping[str, Any]) -> RowKey:
    """The primary key of a row read from Postgres or the feed."""
    return tuple(row[column] for column in table.primary_key)


def _check_label(catalog: Catalog | None, type_name: str, text: str, where: str) -> None:
    labels = None if catalog is None else catalog.enum_labels(type_name)
    if labels is not None and text not in labels:
        raise LoaderError(f"{where}: {text!r} is not a label of {type_name}")
