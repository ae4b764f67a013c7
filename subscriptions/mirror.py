"""A table the nested sets read, mirrored in memory so they follow their sets: `TableMirror`.

A nested set reads other sets: `SELECT team_id FROM projects WHERE lead IN
(SELECT user_id FROM members WHERE org = $1)`. When `u` enters the members
set, the projects led by `u` enter the projects set, and nothing in the feed
names them: the transaction changed `members`, not `projects`. Reading them at
a snapshot is what the outer shapes' moves do, but a set the tailer maintains
cannot wait for a read without judging the transactions after it with a set
from another point of the feed (a design that did so lost rows under churn).

So the registry keeps a *mirror* of the table: its rows, with the columns the
nested sets' conditions and selects read, kept current from the feed like a
set. One mirror serves every nested set of one structure (one per org, say):
memory grows with the table, not with the sets. When a set a nested set reads
changes, the nested set judges again, in memory and at that point of the
feed, the mirrored rows in the region of the change (those whose argument of
the `IN` is a value that moved: `moves.plan_move` decides whether there is a
region, or every row may have moved), found by an index on the argument.

A mirror is exact at every transaction by the argument that keeps a set
exact: each row's changes are applied in commit order (row locks order them),
the transactions its loading snapshot saw skipped (the registry's `skip`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.subscriptions.change import Change
from pgsift.subscriptions.compile import compile_keyed
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.ir import Col, InSet, Slot, in_sets, nodes
from pgsift.subscriptions.materialized import RowKey, old_row_key
from pgsift.subscriptions.moves import plan_move
from pgsift.subscriptions.render import quote_identifier, quote_table
from pgsift.subscriptions.sets import SetDelta, SetProvider

# A row's dict and key tuple, and its index entries, roughly (CPython, 64-bit).
ROW_OVERHEAD = 240
_NULL = object()  # the index entry of an argument with a NULL component


@dataclass(frozen=True, slots=True)
class MirrorSpec:
    """Which rows a mirror holds: a table, with some columns (`key` names both)."""

    table: str
    columns: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.table}({','.join(self.columns)})"


def mirror_spec(inner: InnerSet) -> MirrorSpec:
    """The mirror a nested set reads: its table, with its primary key, selected columns
    and every column its condition reads (sets of one structure share it)."""
    read = sorted({c.name for c in nodes(inner.where, Col)} - set(inner.fetched))
    return MirrorSpec(inner.table, (*inner.fetched, *read))


Argument = Callable[[Mapping[str, Any]], Any]


class TableMirror:
    """One table's rows (some columns) by primary key, and indexes of them by the
    arguments of the `IN`s of the nested sets reading it."""

    __slots__ = ("_indexes", "approx_bytes", "columns", "key", "primary_key", "rows", "table")

    def __init__(self, spec: MirrorSpec, primary_key: tuple[str, ...]) -> None:
        self.key = spec.key
        self.table = spec.table
        self.columns = spec.columns
        self.primary_key = primary_key
        self.rows: dict[RowKey, dict[str, Any]] = {}
        # Per argument (its expressions and keys: shared by every set of a structure),
        # how to compute it, and the rows by its value.
        self._indexes: dict[Any, tuple[Argument, dict[Any, dict[RowKey, None]]]] = {}
        self.approx_bytes = 0

    def sql(self) -> str:
        """The statement that reads the mirror at a snapshot (every row, no constant)."""
        select = ", ".join(quote_identifier(c, psycopg=True) for c in self.columns)
        return f"SELECT {select} FROM {quote_table(self.table, psycopg=True)}"

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.put(tuple(row[c] for c in self.primary_key), row)

    def apply(self, change: Change) -> None:
        """One change of the table, in feed order."""
        if change.op == "truncate":
            for key in list(self.rows):
                self.drop(key)
            return
        old = old_row_key(change, self.primary_key)
        if old is not None:
            self.drop(old)
        new = change.new  # whole: capture fills unchanged TOAST values in
        if change.op != "delete" and new is not None:
            self.put(tuple(new[c] for c in self.primary_key), new)

    def put(self, key: RowKey, row: Mapping[str, Any]) -> None:
        self.drop(key)
        held = {c: row.get(c) for c in self.columns}
        self.rows[key] = held
        for argument, index in self._indexes.values():
            index.setdefault(argument(held), {})[key] = None
        self.approx_bytes += _size(key, held)

    def drop(self, key: RowKey) -> None:
        held = self.rows.pop(key, None)
        if held is None:
            return
        for argument, index in self._indexes.values():
            value = argument(held)
            keys = index[value]
            del keys[key]
            if not keys:
                del index[value]
        self.approx_bytes -= _size(key, held)

    def region(self, inner: InnerSet, delta: SetDelta, sets: SetProvider) -> Iterable[RowKey]:
        """The rows whose verdict for nested set `inner` the change `delta` of a set it
        reads may change (`sets`: as after it). A superset of `plan_move`'s region: every
        row whose argument is a value that moved or has a NULL component; every row
        when there is no region."""
        move = plan_move(inner, inner.fetched, delta, sets)
        if move is None:
            return ()
        if move.refetch:
            return list(self.rows)
        values = delta.added | delta.removed
        found: dict[RowKey, None] = {}
        for node in in_sets(inner.where):
            if inner.inner_sets[node.position].key != delta.key or not node.args:
                continue
            if nodes(node, Slot):  # an argument with constants: not indexed
                return [k for k in self.rows if move.in_region(self.rows[k])]
            index = self._index(node)
            for value in values:
                found.update(index.get(value, {}))
            found.update(index.get(_NULL, {}))
        return list(found)

    def _index(self, node: InSet) -> dict[Any, dict[RowKey, None]]:
        """The rows by `node`'s argument, built on first use and kept from then on."""
        spec = (node.args, node.arg_keys)
        made = self._indexes.get(spec)
        if made is not None:
            return made[1]
        keyed = [compile_keyed(a, k) for a, k in zip(node.args, node.arg_keys, strict=True)]

        def argument(row: Mapping[str, Any]) -> Any:
            parts = [fn(row, ()) for fn in keyed]  # type: ignore[arg-type]
            if None in parts:
                return _NULL
            return parts[0] if len(parts) == 1 else tuple(parts)

        index: dict[Any, dict[RowKey, None]] = {}
        for key, row in self.rows.items():
            index.setdefault(argument(row), {})[key] = None
        self._indexes[spec] = (argument, index)
        return index


def _size(key: RowKey, row: dict[str, Any]) -> int:
    return (
        sys.getsizeof(key)
        + sys.getsizeof(row)
        + sum(sys.getsizeof(v) for v in key)
        + sum(sys.getsizeof(v) for v in row.values())
        + ROW_OVERHEAD
    )
