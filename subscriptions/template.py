"""What shapes with equal structure share: a `Template` (SQL, compiled predicate, term recipe,
wire encoders).

Shapes that differ only in constants have one template, compiled once and kept
in a bounded, thread-safe cache; a shape adds only its constants.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pgsift.subscriptions.compile import Fn, compile_expr, compile_keyed
from pgsift.subscriptions.ir import Col, Expr, InSet
from pgsift.subscriptions.render import render_select
from pgsift.subscriptions.terms import Recipe, term_recipe
from pgsift.subscriptions.wire import RowWire

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
