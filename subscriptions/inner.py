"""One distinct inner select (`x IN (SELECT y FROM t WHERE ...)`): an `InnerSet`.

An inner set is identified by its `key`: the select as pgsift normalized it
(the inner table's policy ANDed in), its typed constants (parameters and the
caller's claims it reads) and how its values are keyed for comparison. Every
shape whose subquery has the same key reads one materialized set.

The I/O layer materializes a set with `to_sql()` (primary key and selected
columns of every matching row) and keeps it current from the feed: a change
of `table` enters the set when `matches(row)` (given the states of the set's
own inner sets, `dependencies`, for nested selects), with the value
`element(row)`. `walk()` lists a set and everything it depends on, the deepest
first: the order to materialize them in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from pgsift.subscriptions.catalog import Table
from pgsift.subscriptions.domains import KeySpec, key_function
from pgsift.subscriptions.ir import Select
from pgsift.subscriptions.template import Templated, template_for
from pgsift.subscriptions.wire import untyped_json


class InnerSet(Templated):
    """The values `(args) IN (SELECT columns FROM table WHERE ...)` compares with."""

    __slots__ = ("_keys", "element_keys", "key", "select")

    def __init__(
        self,
        select: Select,
        element_keys: tuple[KeySpec, ...],
        source: Table,
        params: tuple[Any, ...],
        consts: tuple[Any, ...],
        dependencies: tuple[InnerSet, ...],
    ) -> None:
        self.select = select
        self.element_keys = element_keys
        names = tuple(column.name for column in select.columns)
        primary_key = source.primary_key
        fetched = primary_key + tuple(n for n in names if n not in primary_key)
        types = tuple(source.columns[n] for n in fetched)
        template = template_for(select.table, fetched, primary_key, select.where, types)
        super().__init__(template, params, consts, dependencies)
        self._keys = tuple(key_function(spec) for spec in element_keys)
        identity = json.dumps(
            [
                self._template.normalized,
                [untyped_json(p) for p in params],
                [[spec.kind, *spec.labels] for spec in element_keys],
                names,
            ],
            sort_keys=True,
        )
        self.key: str = hashlib.sha256(identity.encode()).hexdigest()

    @property
    def columns(self) -> tuple[str, ...]:
        """The selected columns, whose values form the set (none for EXISTS)."""
        return tuple(column.name for column in self.select.columns)

    @property
    def fetched(self) -> tuple[str, ...]:
        """The columns `to_sql` reads: the primary key, then the selected columns."""
        return self._template.columns

    @property
    def dependencies(self) -> tuple[InnerSet, ...]:
        """The sets the select's own `IN (SELECT ...)` read (`inner_sets`), by position."""
        return self.inner_sets

    def element(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row's value in the set, keyed for comparison (None for NULL components)."""
        out = []
        for name, key in zip(self.columns, self._keys, strict=True):
            value = row.get(name)
            out.append(value if value is None or key is None else key(value))
        return tuple(out)

    def raw(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row's value in the set as typed Python values (for binding in SQL)."""
        return tuple(row.get(name) for name in self.columns)

    def walk(self) -> tuple[InnerSet, ...]:
        """This set and those it depends on, each once, the deepest first."""
        return walk_sets((self,))



def walk_sets(sets: tuple[InnerSet, ...]) -> tuple[InnerSet, ...]:
    """`sets` and everything they depend on, each once (by key), dependencies first."""
    seen: dict[str, InnerSet] = {}

    def visit(inner: InnerSet) -> Iterator[InnerSet]:
        for dependency in inner.dependencies:
            yield from visit(dependency)
        yield inner

    for inner in sets:
        for found in visit(inner):
            seen.setdefault(found.key, found)
    return tuple(seen.values())
