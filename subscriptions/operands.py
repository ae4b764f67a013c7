"""The constants of a WHERE clause while it is typed: operands, slots, common types.

A constant either has a type of its own (`Typed`: a number, TRUE, a cast) or
takes the type of its context (`Pending`: `'...'`, `$n`, `auth.x`, NULL); the
analysis (`analyze`) resolves the latter and files every constant in `Slots`.
The helpers resolve a list's common type as Postgres does and share IN sets
between shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pgsift.subscriptions import coerce, wire
from pgsift.subscriptions.domains import (
    FLOAT_TYPES,
    INT_TYPES,
    TEXT_TYPES,
    apply_key,
    comparison_keys,
)
from pgsift.subscriptions.ir import Expr, Slot, type_of

NUMBER_RANK = {"int2": 0, "int4": 1, "int8": 2, "numeric": 3, "float4": 4, "float8": 5}
TIME_RANK = {"date": 0, "timestamp": 1, "timestamptz": 2}
# IN lists repeat across shapes (`status IN ('open', 'doing')`): keep one copy of each.
_SHARED_SETS: dict[tuple[frozenset[Any], bool], tuple[frozenset[Any], bool]] = {}
_MAX_SHARED_SETS = 65_536


@dataclass(slots=True)
class Pending:
    """A constant whose type comes from its context: `'...'`, `$n`, `auth.x`, NULL."""

    kind: str  # text | param | claim | null
    raw: Any
    label: str
    position: int | None
    param: int | None = None


@dataclass(slots=True)
class Typed:
    """A constant with a type of its own: a number, TRUE, a cast."""

    value: Any
    type: str
    label: str
    position: int | None


Operand = Expr | Pending | Typed


@dataclass
class Slots:
    """The constants of one statement: typed values (SQL parameters) and runtime values,
    and the inner sets its `InSet` nodes read, by position."""

    params: list[Any] = field(default_factory=list)
    runtime: list[Any] = field(default_factory=list)
    sets: list[Any] = field(default_factory=list)  # InnerSet

    def add(self, value: Any, type_name: str, runtime: Any) -> Slot:
        if type_name.removesuffix("[]") in ("json", "jsonb"):
            # Sent as JSON text (`%s::jsonb` casts it): psycopg adapts no Python value
            # as json, and a dict, a list or JSON_NULL would not even be a parameter.
            value = wire.to_wire(type_name, value)
        self.params.append(value)
        self.runtime.append(runtime)
        return Slot(len(self.params) - 1, type_name)

    def embed(self, inner: Slots) -> int:
        """Append an inner select's constants; returns where they start (its `offset`)."""
        offset = len(self.params)
        self.params.extend(inner.params)
        self.runtime.extend(inner.runtime)
        return offset

    def add_set(self, inner_set: Any) -> int:
        """File an inner set; returns its position."""
        self.sets.append(inner_set)
        return len(self.sets) - 1


def operand_type(operand: Operand) -> str:
    if isinstance(operand, Typed):
        return operand.type
    if isinstance(operand, Pending):
        return "text"
    return type_of(operand)


def common_type(types: list[str]) -> str:
    """The type Postgres resolves a list of comparable types to (numbers, times, text)."""
    if all(t in NUMBER_RANK for t in types):
        return max(types, key=NUMBER_RANK.__getitem__)
    if all(t in TIME_RANK for t in types):
        return max(types, key=TIME_RANK.__getitem__)
    if all(t in TEXT_TYPES for t in types):
        # Each of text, varchar and bpchar casts implicitly to the others, so Postgres's
        # select_common_type keeps the first type (text being preferred changes nothing).
        return types[0]
    return types[0]


def convert(typed: Typed, common: str) -> Any:
    """A constant converted to the list's common type (numbers only change)."""
    value = typed.value
    if value is None or typed.type == common:
        return value
    if common in FLOAT_TYPES and typed.type in FLOAT_TYPES:
        return float(value)  # a real widened to double: already a double, infinities too
    if common in FLOAT_TYPES and typed.type in NUMBER_RANK:
        return coerce.cast_number(value, common)
    if common == "numeric" and typed.type in INT_TYPES:
        return Decimal(value)
    if common in TEXT_TYPES and typed.type in TEXT_TYPES:
        # Only a cast from bpchar changes a string: it drops the trailing spaces.
        return value.rstrip(" ") if typed.type == "bpchar" != common else value
    keys = comparison_keys(common, typed.type, {})
    return apply_key(keys[1], value) if keys is not None else value


def canonical_json(value: Any) -> str:
    return json.dumps(wire.untyped_json(value), sort_keys=True)


def shared_set(members: tuple[frozenset[Any], bool]) -> tuple[frozenset[Any], bool]:
    try:
        return _SHARED_SETS.setdefault(members, members)
    except TypeError:  # an unhashable key cannot be shared (never for typed constants)
        return members
    finally:
        if len(_SHARED_SETS) > _MAX_SHARED_SETS:
            _SHARED_SETS.clear()
