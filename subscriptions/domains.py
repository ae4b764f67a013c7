"""How Postgres compares two values of (possibly different) types, as key functions.

Every comparison operand is mapped through a key function so that Python's
`==` / `<` on the keys agrees with the Postgres operator that the parser's
type resolution would pick:

* integers with integers: exact; integers with numeric: exact (int -> numeric);
  anything with float4/float8: both converted to float8 (an int8 or numeric
  operand is rounded to the nearest double first, as Postgres does).
* NaN (float or numeric) equals NaN and sorts above every other number.
* text, varchar and bpchar: code-point order (collation `C` / `C.UTF-8`).
  bpchar with bpchar or varchar is the bpchar operator (varchar casts implicitly to
  bpchar): both sides ignore trailing spaces. bpchar with text is the text
  operator: only the bpchar side drops its trailing spaces (its cast to text).
* enums: by the position of the label in the type's declaration.
* date, timestamp and timestamptz mixed: promoted to timestamp(tz); a timestamp
  without time zone becomes a timestamptz in the session TimeZone, assumed UTC.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

_SINGLE = struct.Struct("f")
# Doubles at or past this round to infinity in single precision (psycopg never
# yields them for a real column, whose text form of infinity is "Infinity").
_FLOAT4_OVERFLOW = 3.4028235677973366e38

INT_TYPES = frozenset({"int2", "int4", "int8"})
FLOAT_TYPES = frozenset({"float4", "float8"})
NUMBER_TYPES = INT_TYPES | FLOAT_TYPES | {"numeric"}
TEXT_TYPES = frozenset({"text", "varchar", "bpchar"})
TIME_TYPES = frozenset({"date", "timestamp", "timestamptz"})
# Types whose Python values compare in Python exactly as in Postgres.
SAME_TYPE_IDENTITY = frozenset({"bool", "uuid", "time", "interval", "bytea"}) | INT_TYPES


class _Greatest:
    """NaN's key: equal only to itself, greater than every number."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0x7FF8

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return other is self

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __ge__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "NaN"


NAN = _Greatest()


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How one operand is keyed: `kind` names the function, `labels` is set for enums."""

    kind: str
    labels: tuple[str, ...] = ()

    @property
    def is_identity(self) -> bool:
        return self.kind == "id"


IDENTITY = KeySpec("id")


def comparison_keys(
    left: str, right: str, enums: Mapping[str, tuple[str, ...]]
) -> tuple[KeySpec, KeySpec] | None:
    """The key specs for `left <op> right`, None if Postgres has no such operator."""
    if left in NUMBER_TYPES and right in NUMBER_TYPES:
        if left in FLOAT_TYPES or right in FLOAT_TYPES:
            return _float_key(left), _float_key(right)
        if left in INT_TYPES and right in INT_TYPES:
            return IDENTITY, IDENTITY
        return KeySpec("num"), KeySpec("num")
    if left in TEXT_TYPES and right in TEXT_TYPES:
        if "bpchar" in (left, right) and "text" not in (left, right):
            return KeySpec("rstrip"), KeySpec("rstrip")
        return _text_key(left), _text_key(right)
    if left in TIME_TYPES and right in TIME_TYPES:
        target = "timestamptz" if "timestamptz" in (left, right) else "timestamp"
        if left == right == "date":
            target = "date"
        return _time_key(left, target), _time_key(right, target)
    if left == right:
        if left in SAME_TYPE_IDENTITY:
            return IDENTITY, IDENTITY
        labels = enums.get(left)
        if labels is not None:
            spec = KeySpec("enum", labels)
            return spec, spec
    return None


def _float_key(type_name: str) -> KeySpec:
    # psycopg reads real values from their shortest text form ("9.007199e+15"), which
    # is not the stored single-precision value as a double: round it back first.
    return KeySpec("float4") if type_name == "float4" else KeySpec("float")


def _text_key(type_name: str) -> KeySpec:
    return KeySpec("rstrip") if type_name == "bpchar" else IDENTITY


def _time_key(type_name: str, target: str) -> KeySpec:
    if type_name == target:
        return IDENTITY
    return KeySpec(f"{type_name}->{target}")


def _num(value: Any) -> Any:
    return value if value == value else NAN


def _float(value: Any) -> Any:
    number = float(value)
    return number if number == number else NAN


def _float4(value: Any) -> Any:
    number = float(value)
    if number != number:
        return NAN
    if abs(number) >= _FLOAT4_OVERFLOW:
        return number
    return _SINGLE.unpack(_SINGLE.pack(number))[0]


def _rstrip(value: Any) -> Any:
    return value.rstrip(" ")


def _date_to_timestamp(value: Any) -> Any:
    return datetime.combine(value, time())


def _date_to_timestamptz(value: date) -> Any:
    return datetime.combine(value, time(), UTC)


def _timestamp_to_timestamptz(value: datetime) -> Any:
    return value.replace(tzinfo=UTC)


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "num": _num,
    "float": _float,
    "float4": _float4,
    "rstrip": _rstrip,
    "date->timestamp": _date_to_timestamp,
    "date->timestamptz": _date_to_timestamptz,
    "timestamp->timestamptz": _timestamp_to_timestamptz,
}


def key_function(spec: KeySpec) -> Callable[[Any], Any] | None:
    """The function for `spec`; None for the identity (callers skip the call)."""
    if spec.kind == "id":
        return None
    if spec.kind == "enum":
        positions = {label: index for index, label in enumerate(spec.labels)}
        return positions.__getitem__
    return _FUNCTIONS[spec.kind]


def apply_key(spec: KeySpec, value: Any) -> Any:
    """`value` keyed by `spec` (None stays None)."""
    function = key_function(spec)
    if value is None or function is None:
        return value
    return function(value)
