"""Typing constants the way Postgres does: literals, casts, `$n` parameters and claims.

A quoted literal, a parameter and a claim have no type of their own; like
Postgres, they take the type of what they are compared with (`team_id = '7'`
makes `'7'` an int4). Numeric literals are int4, int8 or numeric by their
spelling and size. Values are the Python values psycopg 3 returns for the type.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pgsift.subscriptions import values
from pgsift.subscriptions.domains import FLOAT_TYPES, INT_TYPES, TEXT_TYPES

INT_RANGES = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
SCALAR_TYPES = (
    INT_TYPES
    | FLOAT_TYPES
    | TEXT_TYPES
    | {"numeric", "bool", "uuid", "date", "time", "timestamp", "timestamptz", "interval"}
    | {"bytea", "json", "jsonb"}
)
_BOOL_WORDS = {
    "t": True, "true": True, "y": True, "yes": True, "on": True, "1": True,
    "f": False, "false": False, "n": False, "no": False, "off": False, "0": False,
}  # fmt: skip
_INTEGER = re.compile(r"\s*[-+]?\d+\s*")
_NUMBER = re.compile(
    r"\s*([-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?|[-+]?(nan|inf|infinity))\s*", re.IGNORECASE
)


class CoercionError(ValueError):
    """A constant that does not fit the type (`'abc'` as an int4)."""


def canonical_type(name: str) -> str:
    """`integer` -> `int4`, `INT[]` -> `int4[]`; enum names are kept."""
    name = name.strip()
    if name.endswith("[]"):
        return canonical_type(name[:-2]) + "[]"
    lowered = name.lower()
    return values.ALIASES.get(lowered, lowered)


def is_array(type_name: str) -> bool:
    return type_name.endswith("[]")


def numeric_literal(text: str) -> tuple[Any, str]:
    """A numeric literal's value and type: int4, int8 or numeric, as Postgres types it."""
    if text.isdigit():
        number = int(text)
        if number < 2**31:
            return number, "int4"
        if number < 2**63:
            return number, "int8"
    try:
        return Decimal(text), "numeric"
    except InvalidOperation:
        raise CoercionError(f"invalid number {text!r}") from None


def from_text(type_name: str, text: str, enums: Mapping[str, tuple[str, ...]]) -> Any:
    """A quoted literal read as `type_name` (the type's input function)."""
    if is_array(type_name):
        element = type_name[:-2]
        try:
            parsed = values.parse_text(type_name, text)
        except (ValueError, TypeError, IndexError) as exc:
            raise CoercionError(f"invalid input for type {type_name}: {text!r} ({exc})") from None
        if element in INT_TYPES | FLOAT_TYPES | {"numeric", "bool"} or element in enums:
            return from_value(type_name, parsed, enums)
        return parsed
    if type_name in INT_TYPES:
        if not _INTEGER.fullmatch(text):
            raise CoercionError(f"invalid input syntax for type {type_name}: {text!r}")
        return _int_in_range(type_name, int(text))
    if type_name == "numeric" or type_name in FLOAT_TYPES:
        if not _NUMBER.fullmatch(text):
            raise CoercionError(f"invalid input syntax for type {type_name}: {text!r}")
        if type_name == "numeric":
            return Decimal(text.strip())
        return _float_in_range(type_name, float(text))
    if type_name == "bool":
        word = text.strip().lower()
        if word not in _BOOL_WORDS:
            raise CoercionError(f"invalid input syntax for type boolean: {text!r}")
        return _BOOL_WORDS[word]
    labels = enums.get(type_name)
    if labels is not None:
        return _enum_label(type_name, labels, text)
    if type_name == "date":
        return _date(text)
    if type_name not in SCALAR_TYPES:
        raise CoercionError(f"constants of type {type_name} are not supported")
    return from_value(type_name, text, enums)


def from_value(type_name: str, value: Any, enums: Mapping[str, tuple[str, ...]]) -> Any:
    """A parameter or claim (JSON-able or already typed) as a `type_name` value."""
    if value is None:
        return None
    if is_array(type_name):
        element = type_name[:-2]
        if not isinstance(value, list | tuple):
            raise CoercionError(f"expected a list for type {type_name}, got {value!r}")
        return [from_value(element, item, enums) for item in _flatten(value)]
    labels = enums.get(type_name)
    if labels is not None:
        if not isinstance(value, str):
            raise CoercionError(f"expected a string for enum {type_name}, got {value!r}")
        return _enum_label(type_name, labels, value)
    if type_name not in SCALAR_TYPES:
        raise CoercionError(f"constants of type {type_name} are not supported")
    if isinstance(value, str) and (type_name in INT_TYPES or type_name == "date"):
        return from_text(type_name, value, enums)
    try:
        typed = values.from_json(type_name, value)
    except (TypeError, ValueError) as exc:
        raise CoercionError(str(exc)) from None
    if type_name in FLOAT_TYPES:
        return _float_in_range(type_name, typed)
    if type_name == "numeric" and isinstance(typed, Decimal) and typed.is_snan():
        raise CoercionError(f"invalid input syntax for type numeric: {value!r}")
    return typed


def cast_number(value: int | Decimal, type_name: str) -> Any:
    """A numeric constant cast to another numeric type (`2.5::int4` is 3)."""
    if type_name in INT_TYPES:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise CoercionError(f"cannot convert {value} to {type_name}")
            value = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return _int_in_range(type_name, value)
    if type_name == "numeric":
        return Decimal(value)
    if type_name in FLOAT_TYPES:
        return _float_in_range(type_name, float(value))
    raise CoercionError(f"cannot cast a number to {type_name}")


def _date(text: str) -> date:
    """ISO dates; like Postgres, a time of day after the date is read and dropped."""
    stripped = text.strip()
    try:
        return date.fromisoformat(stripped)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(stripped).date()
    except ValueError:
        raise CoercionError(f"invalid input syntax for type date: {text!r}") from None


def _flatten(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    flat: list[Any] = []
    for item in items:
        if isinstance(item, list | tuple):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def _int_in_range(type_name: str, number: int) -> int:
    bound = INT_RANGES[type_name]
    if not -bound <= number < bound:
        raise CoercionError(f"value {number} is out of range for type {type_name}")
    return number


def _float_in_range(type_name: str, number: float) -> float:
    if type_name == "float4" and number == number and abs(number) != float("inf"):
        if abs(number) > 3.4028234663852886e38:
            raise CoercionError(f"value {number} is out of range for type real")
        # A float4 constant is stored rounded to single precision.
        return float(struct.unpack("f", struct.pack("f", number))[0])
    return number


def _enum_label(type_name: str, labels: tuple[str, ...], text: str) -> str:
    if text not in labels:
        raise CoercionError(f'invalid input value for enum {type_name}: "{text}"')
    return labels[labels.index(text)]  # the catalog's string: shared by every shape
