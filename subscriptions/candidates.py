"""The rows a nested set may hold, kept so its membership follows the sets it reads: `Candidates`.

A nested set reads other sets: `SELECT team_id FROM projects WHERE lead IN
(SELECT user_id FROM members WHERE org = $1)`. When `u` enters the members
set, the projects led by `u` enter the projects set, and nothing in the feed
names them: the transaction changed `members`, not `projects`. Reading them at
a snapshot is what the outer shapes' moves do, but a set the tailer maintains
cannot wait for a read without judging the transactions after it with a set
from another point of the feed (a design that did so lost rows under churn).

So a nested set keeps its *candidates*: every row of its table that its
condition can admit whatever the sets it reads hold -- the rows that pass the
condition's top-level AND terms that read no set (all rows when there are
none), with the columns the condition reads. A change of a set it reads then
re-judges, in memory and at that point of the feed, the candidates in the
region of the change (those whose argument of the `IN` is one of the values
that moved: `moves.plan_move` decides whether there is a region, or every row
may have moved). The set's own table's changes update the candidates as they
update the set. The membership is therefore exact at every transaction, with
no query, and the outer shapes move rows as for a first-level set.

Memory: the candidates are counted in the set's `approx_bytes`, under the
registry's bound like its members.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pgsift.subscriptions.compile import Fn, compile_expr, compile_keyed
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Col, Expr, children, conjuncts, in_sets
from pgsift.subscriptions.moves import IN_SHAPE, condition, plan_move
from pgsift.subscriptions.render import quote_identifier, quote_table
from pgsift.subscriptions.sets import SetDelta, SetProvider

RowKey = tuple[Any, ...]
# A row's dict, its key's tuple and its index entries, roughly (CPython, 64-bit).
ROW_OVERHEAD = 240
_NULL = object()  # the index entry of an argument with a NULL component


def read_columns(expr: Expr | None) -> tuple[str, ...]:
    """The columns of its own table an expression reads (not those of its selects)."""
    found: dict[str, None] = {}
    pending = [] if expr is None else [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, Col):
            found[node.name] = None
        pending.extend(children(node))
    return tuple(found)


def _free_terms(inner: InnerSet) -> tuple[Expr, ...]:
    """The condition's top-level AND terms that read no set (a row failing one is out
    whatever the sets hold)."""
    where = inner.where
    if where is None:
        return ()
    return tuple(term for term in conjuncts(where) if not in_sets(term))


def load_query(inner: InnerSet) -> tuple[str, list[Any], tuple[str, ...]]:
    """How to read a set at a snapshot: SQL, parameters and the columns of its rows.

    A set that reads no other set: its own select. A nested set: its candidates,
    each with `IN_SHAPE`, its whole condition as Postgres judges it in that snapshot
    (the sets it reads as they are there, not as the gateway holds them)."""
    if not inner.dependencies:
        sql, params = inner.to_sql()
        return sql, params, inner.fetched
    columns = candidate_columns(inner)
    where = inner.where
    assert where is not None  # it reads sets
    flag_sql, flag_slots = condition(where)
    select = ", ".join(quote_identifier(c, psycopg=True) for c in columns)
    flag = quote_identifier(IN_SHAPE, psycopg=True)
    table = quote_table(inner.table, psycopg=True)
    sql = f"SELECT {select}, ({flag_sql}) IS TRUE AS {flag} FROM {table}"
    slots = list(flag_slots)
    terms = []
    for term in _free_terms(inner):
        term_sql, term_slots = condition(term)
        terms.append(f"({term_sql})")
        slots.extend(term_slots)
    if terms:
        sql += " WHERE " + " AND ".join(terms)
    return sql, [inner.params[slot] for slot in slots], (*columns, IN_SHAPE)


def candidate_columns(inner: InnerSet) -> tuple[str, ...]:
    """The primary key, the selected columns, and every column the condition reads."""
    return tuple(dict.fromkeys((*inner.fetched, *read_columns(inner.where))))


class Candidates:
    """A nested set's candidate rows by primary key, indexed by their arguments of the
    `IN`s so that a change of a set they read finds its region without a scan."""

    __slots__ = ("_admits", "_consts", "_indexes", "approx_bytes", "columns", "inner", "rows")

    def __init__(self, inner: InnerSet) -> None:
        self.inner = inner
        self.columns = candidate_columns(inner)
        self._consts = inner.consts
        self._admits: tuple[Fn, ...] = tuple(compile_expr(t) for t in _free_terms(inner))
        # Per `IN` that reads the row: the set it reads, its argument keyed as the set's
        # members are, and the rows by that keyed argument.
        self._indexes: list[
            tuple[str, Callable[[Mapping[str, Any]], Any], dict[Any, dict[RowKey, None]]]
        ] = []
        for node in in_sets(inner.where):
            if not node.args or not read_columns(node):
                continue  # EXISTS, or constants: no region (`plan_move`: all or none)
            keyed = [compile_keyed(a, k) for a, k in zip(node.args, node.arg_keys, strict=True)]
            self._indexes.append((inner.inner_sets[node.position].key, self._argument(keyed), {}))
        self.rows: dict[RowKey, dict[str, Any]] = {}
        self.approx_bytes = 0

    def _argument(self, keyed: list[Fn]) -> Callable[[Mapping[str, Any]], Any]:
        consts = self._consts

        def argument(row: Mapping[str, Any]) -> Any:
            parts = [fn(row, consts) for fn in keyed]  # type: ignore[arg-type]
            if None in parts:
                return _NULL
            return parts[0] if len(parts) == 1 else tuple(parts)

        return argument

    def admits(self, row: Mapping[str, Any]) -> bool:
        """Whether the row passes every term that reads no set."""
        consts = self._consts
        return all(admit(row, consts) is True for admit in self._admits)  # type: ignore[arg-type]

    def put(self, key: RowKey, row: Mapping[str, Any]) -> dict[str, Any]:
        """Hold the row (its condition's columns); the held copy."""
        self.drop(key)
        held = {c: row.get(c) for c in self.columns}
        self.rows[key] = held
        for _, argument, index in self._indexes:
            index.setdefault(argument(held), {})[key] = None
        self.approx_bytes += _size(key, held)
        return held

    def drop(self, key: RowKey) -> None:
        held = self.rows.pop(key, None)
        if held is None:
            return
        for _, argument, index in self._indexes:
            value = argument(held)
            keys = index[value]
            del keys[key]
            if not keys:
                del index[value]
        self.approx_bytes -= _size(key, held)

    def clear(self) -> None:
        for key in list(self.rows):
            self.drop(key)

    def region(self, delta: SetDelta, sets: SetProvider) -> Iterable[RowKey]:
        """The rows whose verdict `delta` (of a set the condition reads) may change; `sets`
        as after it. A superset of `plan_move`'s region: every row whose argument is one
        of the values that moved or has a NULL component."""
        move = plan_move(self.inner, self.inner.fetched, delta, sets)
        if move is None:
            return ()
        if move.refetch:
            return list(self.rows)
        values = delta.added | delta.removed
        found: dict[RowKey, None] = {}
        for set_key, _, index in self._indexes:
            if set_key != delta.key:
                continue
            for value in values:
                found.update(index.get(value, {}))
            found.update(index.get(_NULL, {}))
        return list(found)


def _size(key: RowKey, row: dict[str, Any]) -> int:
    return (
        sys.getsizeof(key)
        + sys.getsizeof(row)
        + sum(sys.getsizeof(v) for v in key)
        + sum(sys.getsizeof(v) for v in row.values())
        + ROW_OVERHEAD
    )
