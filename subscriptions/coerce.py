"""Typing constants the way Postgres does: literals, casts, `$n` parameters and claims.

A quoted literal, a parameter and a claim have no type of their own; like
Postgres, they take the type of what they are compared with (`team_id = '7'`
makes `'7'` an int4). Numeric literals are int4, int8 or numeric by their
spelling and size. Values are the Python values psycopg 3 returns for the type.

Every constant is also checked against what Postgres accepts for its type
(`check_sendable`): text without U+0000 and encodable as UTF-8, numerics
within numeric's range, jsonb strings jsonb can hold. A constant Postgres
would refuse is a `CoercionError` here, before any statement is sent or any
dump build is enqueued, never an error from the server halfway through.
"""

from __future__ import annotations

import math
import re
import reprlib
import struct
from collections.abc import Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pgsift.subscriptions import pgtext, typenames, wire
from pgsift.subscriptions.domains import FLOAT_TYPES, INT_TYPES, TEXT_TYPES
from pgsift.subscriptions.jsonvalues import nested_deeper_than

INT_RANGES = {"int2": 2**15, "int4": 2**31, "int8": 2**63}
# Postgres's MAXDIM; deeper client arrays are refused rather than recursed into.
MAX_ARRAY_DIMENSIONS = 6
# json / jsonb constants (only ever tested for NULL) are kept shallow enough to encode.
MAX_JSON_DEPTH = 100
_INT8_DIGITS = 19
# numeric's range: digits before the decimal point, and after it (`1e131072` and
# `1e-16384` are "value overflows numeric format" in Postgres).
NUMERIC_MAX_WEIGHT = 131072
NUMERIC_MAX_SCALE = 16383
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
    return typenames.ALIASES.get(lowered, lowered)


def is_array(type_name: str) -> bool:
    return type_name.endswith("[]")


def numeric_literal(text: str) -> tuple[Any, str]:
    """A numeric literal's value and type: int4, int8 or numeric, as Postgres types it."""
    # More than 19 significant digits is past int8 (and past Python's int-from-string
    # limit long before it matters): numeric, like Postgres.
    if text.isdigit() and len(text.lstrip("0")) <= _INT8_DIGITS:
        number = int(text)
        if number < 2**31:
            return number, "int4"
        if number < 2**63:
            return number, "int8"
    try:
        decimal = Decimal(text)
    except InvalidOperation:
        raise CoercionError(f"invalid number {_short(text)}") from None
    check_sendable("numeric", decimal)
    return decimal, "numeric"


def from_text(type_name: str, text: str, enums: Mapping[str, tuple[str, ...]]) -> Any:
    """A quoted literal read as `type_name` (the type's input function)."""
    if is_array(type_name):
        element = type_name[:-2]
        try:
            parsed = pgtext.parse_text(type_name, text)
        except (ValueError, TypeError, IndexError) as exc:
            raise CoercionError(
                f"invalid input for type {type_name}: {_short(text)} ({exc})"
            ) from None
        _flatten(parsed, type_name)  # refuses more than MAX_ARRAY_DIMENSIONS
        if element in INT_TYPES | FLOAT_TYPES | {"numeric", "bool"} or element in enums:
            return from_value(type_name, parsed, enums)
        check_sendable(type_name, parsed)
        return parsed
    if type_name in INT_TYPES:
        if not _INTEGER.fullmatch(text):
            raise CoercionError(f"invalid input syntax for type {type_name}: {text!r}")
        if len(text.strip().lstrip("+-").lstrip("0")) > _INT8_DIGITS:
            raise CoercionError(f"value {_short(text)} is out of range for type {type_name}")
        return _int_in_range(type_name, int(text))
    if type_name == "numeric" or type_name in FLOAT_TYPES:
        if not _NUMBER.fullmatch(text):
            raise CoercionError(f"invalid input syntax for type {type_name}: {text!r}")
        if type_name == "numeric":
            return Decimal(text.strip())
        number = float(text)
        if math.isinf(number) and "inf" not in text.lower():
            raise CoercionError(f"value {_short(text)} is out of range for type {type_name}")
        return _float_in_range(type_name, number)
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
    if type_name in ("json", "jsonb"):
        try:
            parsed = pgtext.parse_json(text)
        except ValueError:  # also UnrepresentableValue: nested too deeply
            raise CoercionError(
                f"invalid input syntax for type {type_name}: {_short(text)}"
            ) from None
        _check_json_depth(type_name, parsed)
        check_sendable(type_name, parsed)
        return parsed
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
            raise CoercionError(f"expected a list for type {type_name}, got {reprlib.repr(value)}")
        return [from_value(element, item, enums) for item in _flatten(value, type_name)]
    labels = enums.get(type_name)
    if labels is not None:
        if not isinstance(value, str):
            raise CoercionError(
                f"expected a string for enum {type_name}, got {reprlib.repr(value)}"
            )
        return _enum_label(type_name, labels, value)
    if type_name not in SCALAR_TYPES:
        raise CoercionError(f"constants of type {type_name} are not supported")
    if isinstance(value, str) and (type_name in INT_TYPES or type_name == "date"):
        return from_text(type_name, value, enums)
    try:
        typed = wire.from_json(type_name, value)
    except (TypeError, ValueError) as exc:
        raise CoercionError(str(exc)) from None
    if type_name in ("json", "jsonb"):
        # After parsing: a JSON text (json's wire form) nests as deep as a JSON value.
        _check_json_depth(type_name, typed)
    if type_name in FLOAT_TYPES:
        return _float_in_range(type_name, typed)
    if type_name == "numeric" and isinstance(typed, Decimal) and typed.is_snan():
        raise CoercionError(f"invalid input syntax for type numeric: {_short(value)}")
    check_sendable(type_name, typed)
    return typed


def cast_number(value: int | Decimal, type_name: str) -> Any:
    """A numeric constant cast to another numeric type (`2.5::int4` is 3)."""
    if type_name in INT_TYPES:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise CoercionError(f"cannot convert {value} to {type_name}")
            if value.adjusted() >= _INT8_DIGITS:  # also keeps 1e99999 from `quantize`
                raise CoercionError(f"value {_short(value)} is out of range for type {type_name}")
            value = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return _int_in_range(type_name, value)
    if type_name == "numeric":
        decimal = Decimal(value)
        check_sendable(type_name, decimal)
        return decimal
    if type_name in FLOAT_TYPES:
        try:
            number = float(value)
        except OverflowError:  # an int past the double range
            raise CoercionError(
                f"value {_short(value)} is out of range for type {type_name}"
            ) from None
        if math.isinf(number) and not (isinstance(value, Decimal) and value.is_infinite()):
            raise CoercionError(f"value {_short(value)} is out of range for type {type_name}")
        return _float_in_range(type_name, number)
    raise CoercionError(f"cannot cast a number to {type_name}")


def check_sendable(type_name: str, value: Any) -> None:
    """CoercionError when Postgres would refuse `value` as a `type_name` parameter.

    Text with U+0000 or a lone surrogate (not UTF-8), a numeric past numeric's
    range, and in jsonb a string or key that jsonb cannot hold (the same two
    characters). Arrays are checked element by element; json (not jsonb) holds
    any text, as Postgres's json type does.
    """
    jsonb = type_name.removesuffix("[]") == "jsonb"
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if type_name.removesuffix("[]") != "json" and (problem := _bad_text(item)):
                raise CoercionError(f"invalid input for type {type_name}: {problem}")
        elif isinstance(item, Decimal):
            _check_numeric(type_name, item)
        elif isinstance(item, list):
            pending.extend(item)
        elif jsonb and isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())


def _bad_text(text: str) -> str | None:
    """Why Postgres cannot store `text`, or None."""
    if "\x00" in text:
        return "text cannot contain the character U+0000"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return f"{_short(ascii(text))} holds a lone surrogate, which is not UTF-8"
    return None


def _check_numeric(type_name: str, number: Decimal) -> None:
    if not number.is_finite():
        return  # NaN, Infinity and -Infinity are numeric values (snan is refused before)
    weight = number.adjusted() + 1 if number else 0
    scale = max(0, -int(number.as_tuple().exponent))
    if weight > NUMERIC_MAX_WEIGHT or scale > NUMERIC_MAX_SCALE:
        raise CoercionError(
            f"value {_short(number)} is out of range for type {type_name} (Postgres allows "
            f"{NUMERIC_MAX_WEIGHT} digits before the decimal point and "
            f"{NUMERIC_MAX_SCALE} after it)"
        )


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


def _flatten(items: list[Any] | tuple[Any, ...], type_name: str, depth: int = 1) -> list[Any]:
    """A nested array's elements in order; at most `MAX_ARRAY_DIMENSIONS` levels, as Postgres."""
    if depth > MAX_ARRAY_DIMENSIONS:
        raise CoercionError(
            f"{type_name}: number of array dimensions exceeds the maximum allowed "
            f"({MAX_ARRAY_DIMENSIONS})"
        )
    flat: list[Any] = []
    for item in items:
        if isinstance(item, list | tuple):
            flat.extend(_flatten(item, type_name, depth + 1))
        else:
            flat.append(item)
    return flat


def _check_json_depth(type_name: str, value: Any) -> None:
    """Refuse a json constant nested deeper than `MAX_JSON_DEPTH`."""
    if nested_deeper_than(value, MAX_JSON_DEPTH):
        raise CoercionError(f"{type_name} constant nested deeper than {MAX_JSON_DEPTH} levels")


def _short(value: object) -> str:
    """A constant for a message, cut to a readable length."""
    text = str(value).strip()
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


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
