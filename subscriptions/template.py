"""What shapes with equal structure share: a `Template` (SQL, compiled predicate, term recipe,
wire encoders).

Shapes that differ only in constants have one template, compiled once and kept
in a bounded, thread-safe cache; a shape adds only its constants. `Templated` is
what a shape and an inner set (`pgsift.subscriptions.inner`) read from theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgsift.subscriptions.compile import Fn, compile_expr, compile_keyed
from pgsift.subscriptions.ir import Col, Expr, InSet
from pgsift.subscriptions.render import render_select
from pgsift.subscriptions.sets import SetProvider, bind_states
from pgsift.subscriptions.terms import Recipe, term_recipe
from pgsift.subscriptions.wire import RowWire

if TYPE_CHECKING:
    from pgsift.subscriptions.inner import InnerSet

_MAX_TEMPLATES = 10_000


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """Everything shapes with equal structure share: SQL, compiled predicate, term recipe."""

    table: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    wire: RowWire  # the columns' encoders to the wire form, by their types
    predicate: Fn | None
    sql: str  # psycopg 3, `%s` placeholders
    normalized: str  # for people and for the key, `$n::type` placeholders
    recipe: Recipe
    where: Expr | None
    # When the whole condition is `col IN (SELECT ...)`: the keyed column and the set's
    # position. Then a row matches exactly when its keyed value is a member (`in_set`
    # is TRUE only so), a dict lookup instead of the general evaluation.
    member_test: tuple[Fn, int] | None = None


class Templated:
    """A compiled `Template` with its own constants and the inner sets its condition
    reads: what a `Shape` and an `InnerSet` are alike in, matching rows included.
    Two are equal when their `key`s are (the subclass says what a key covers)."""

    __slots__ = ("_consts", "_params", "_set_keys", "_template", "inner_sets")

    key: str

    def __init__(
        self,
        template: Template,
        params: tuple[Any, ...],
        consts: tuple[Any, ...],
        inner_sets: tuple[InnerSet, ...],
    ) -> None:
        self._template = template
        self._params = params
        self._consts = consts
        # The sets the predicate reads, by position (`InSet.position`).
        self.inner_sets = inner_sets
        self._set_keys = tuple(inner.key for inner in inner_sets)

    @property
    def table(self) -> str:
        return self._template.table

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self._template.primary_key

    @property
    def wire(self) -> RowWire:
        """The encoders of the fetched columns to their wire form, by column type."""
        return self._template.wire

    @property
    def normalized(self) -> str:
        """The statement as pgsift understood it, constants as typed `$n` placeholders."""
        return self._template.normalized

    @property
    def params(self) -> tuple[Any, ...]:
        """The typed constants, in the order of the placeholders."""
        return self._params

    @property
    def where(self) -> Expr | None:
        """The typed condition (the policy ANDed in); slots index `params`."""
        return self._template.where

    @property
    def consts(self) -> tuple[Any, ...]:
        """The constants as the predicate reads them (keyed), by slot."""
        return self._consts

    def matches(self, row: Mapping[str, Any], sets: SetProvider | None = None) -> bool:
        """True exactly when Postgres's `SELECT ... WHERE` would return `row`.

        With inner sets, their states are read from `sets` (SetError without).
        """
        template = self._template
        predicate = template.predicate
        if predicate is None:
            return True
        consts = self._consts
        if template.member_test is not None and sets is not None:
            keyed, position = template.member_test
            value = keyed(row, consts)  # type: ignore[arg-type]
            return value is not None and value in sets.state(self._set_keys[position]).members
        if self._set_keys:
            consts = bind_states(consts, self._set_keys, sets)
        return predicate(row, consts) is True  # type: ignore[arg-type]

    def to_sql(self) -> tuple[str, list[Any]]:
        """The statement for psycopg 3: every constant a parameter, the policy ANDed in."""
        return self._template.sql, list(self._params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._template.normalized!r}, params={self._params!r})"


def member_test(where: Expr | None) -> tuple[Fn, int] | None:
    """The keyed column and set position of a condition that is one `col IN (SELECT)`."""
    if not isinstance(where, InSet) or len(where.args) != 1:
        return None
    (arg,) = where.args
    if not isinstance(arg, Col):
        return None
    return compile_keyed(arg, where.arg_keys[0]), where.position


_templates: dict[
    tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], Expr | None], Template
] = {}
# Shapes are parsed on the event loop and in worker threads alike.
_templates_lock = threading.Lock()


def template_for(
    table: str,
    columns: tuple[str, ...],
    primary_key: tuple[str, ...],
    where: Expr | None,
    types: tuple[str, ...],
) -> Template:
    """The shared template for this structure, compiled on first use (thread-safe);
    `types` are the columns' types, which give their wire form."""
    cache_key = (table, columns, primary_key, types, where)
    with _templates_lock:
        template = _templates.get(cache_key)
    if template is None:
        # Compiled outside the lock; two threads racing on one structure build equal
        # templates and the first one stored wins.
        built = Template(
            table=table,
            columns=columns,
            primary_key=primary_key,
            wire=RowWire(columns, types),
            predicate=compile_expr(where) if where is not None else None,
            sql=render_select(table, columns, where, psycopg=True),
            normalized=render_select(table, columns, where, psycopg=False),
            recipe=term_recipe(where),
            where=where,
            member_test=member_test(where),
        )
        with _templates_lock:
            template = _templates.get(cache_key)
            if template is None:
                while len(_templates) >= _MAX_TEMPLATES:
                    _templates.pop(next(iter(_templates)), None)
                _templates[cache_key] = template = built
    return template
