"""Column values <-> their wire form: the JSON values clients receive in rows and send.

The wire form depends on the column's type, never on the Python value alone,
so that it is lossless for a JavaScript client (whose numbers are doubles)
and keeps JSON `null` apart from SQL NULL (`docs/wire-values.md`):

| type | wire form |
|---|---|
| SQL NULL (any type) | `null` |
| int2, int4, oid | number |
| int8 | string of digits (`"9007199254740993"`) |
| numeric | string in Postgres's notation (`"12.50"`, `"NaN"`, `"-Infinity"`) |
| float4, float8 | number (shortest round-trip form); `"NaN"`, `"Infinity"`, `"-Infinity"` |
| bool | `true` / `false` |
| text, varchar, bpchar, name, enums, unknown types | string |
| uuid | string |
| date, time, timetz, timestamp, timestamptz | ISO 8601 string, microseconds kept |
| interval | ISO 8601 duration (`P1DT2H3M4.5S`) |
| json, jsonb | string holding the JSON text (`"null"`, `"{\\"a\\":1}"`) |
| bytea | `"\\x<hex>"` |
| arrays | JSON arrays (nested per dimension) of the elements' wire form |

`RowWire` compiles the encoders of a column list once and turns rows (dicts
or tuples) into wire rows; every encoder of rows uses it. `from_json` is the
way back: a wire value (or a client parameter) -> the typed value.
`untyped_json` is for values whose column type is not at hand (shape keys,
the feed tail): it dispatches on the Python class and is not the wire form.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from uuid import UUID

from pgsift.subscriptions.durations import format_duration, parse_duration
from pgsift.subscriptions.jsonvalues import JSON_NULL, dump_json
from pgsift.subscriptions.pgtext import (
    Parser,
    parse_date,
    parse_interval,
    parse_json,
    parse_timestamp,
)
from pgsift.subscriptions.typenames import canonical, element_type

# Changes whenever a type's wire form does: stored rows in another form are stale.
WIRE_VERSION = 2

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
Converter = Callable[[str, object], Any]
Encoder = Callable[[Any], Json]
T = TypeVar("T")

# -- Python -> wire ---------------------------------------------------------


def _float(value: float) -> Json:
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _numeric(value: Decimal) -> str:
    # "f": Postgres's plain notation (str() would write 1E-7 for 0.0000001).
    return format(value, "f")


def _bytea(value: bytes | bytearray | memoryview) -> str:
    return "\\x" + bytes(value).hex()


# None: the Python value (int, bool, str) is its own wire form.
ENCODERS: dict[str, Encoder | None] = {
    "int2": None,
    "int4": None,
    "oid": None,
    "int8": str,
    "numeric": _numeric,
    "float4": _float,
    "float8": _float,
    "bool": None,
    "text": None,
    "varchar": None,
    "bpchar": None,
    "name": None,
    "uuid": str,
    "date": date.isoformat,
    "time": time.isoformat,
    "timetz": time.isoformat,
    "timestamp": datetime.isoformat,
    "timestamptz": datetime.isoformat,
    "interval": format_duration,
    "json": dump_json,
    "jsonb": dump_json,
    "bytea": _bytea,
}


def encoder_for(type_name: str) -> Encoder | None:
    """How a non-NULL value of `type_name` becomes its wire form; None: it already is."""
    name = canonical(type_name)
    if name.endswith("[]"):
        element = element_type(name)
        encode = ENCODERS.get(element)
        if encode is None:
            return None  # nested lists of ints, strings, bools: as they are
        if element in ("json", "jsonb"):
            # Each element is one json value: a list there is a JSON array, not a dimension.
            return lambda items: [None if item is None else encode(item) for item in items]
        return lambda items: _array(items, encode)
    return ENCODERS.get(name)


def _array(items: list[Any], encode: Encoder) -> list[Json]:
    return [
        None if item is None else _array(item, encode) if type(item) is list else encode(item)
        for item in items
    ]


def to_wire(type_name: str, value: Any) -> Json:
    """One value of a `type_name` column in its wire form (None stays None)."""
    encode = encoder_for(type_name)
    return value if value is None or encode is None else encode(value)


class RowWire:
    """The wire encoders of one column list, compiled once: rows -> wire rows."""

    __slots__ = ("_by_name", "_encoded", "columns", "types")

    def __init__(self, columns: Sequence[str], types: Sequence[str]) -> None:
        if len(columns) != len(types):
            raise ValueError(f"{len(columns)} columns but {len(types)} types")
        self.columns = tuple(columns)
        self.types = tuple(types)
        self._by_name = {name: encoder_for(t) for name, t in zip(columns, types, strict=True)}
        # Only the columns whose values change on the way: the rest are copied as a whole.
        self._encoded = tuple((n, e) for n, e in self._by_name.items() if e is not None)

    def values(self, row: Sequence[Any]) -> dict[str, Json]:
        """A row tuple in column order -> the wire row."""
        out: dict[str, Any] = dict(zip(self.columns, row, strict=True))
        for name, encode in self._encoded:
            value = out[name]
            if value is not None:
                out[name] = encode(value)
        return out

    def type_names(self) -> dict[str, str]:
        """Each column's type name: what a client needs to decode the wire form."""
        return dict(zip(self.columns, self.types, strict=True))

    def mapping(self, row: Mapping[str, Any]) -> dict[str, Json]:
        """A row dict over some of the columns (a key, a projected row) -> the wire row."""
        by_name = self._by_name
        out: dict[str, Json] = {}
        for name, value in row.items():
            encode = by_name.get(name)
            out[name] = value if encode is None or value is None else encode(value)
        return out


def untyped_json(value: Any) -> Json:
    """A value's JSON form by its Python class alone, where no column type is at hand.

    For shape keys and the feed tail: ints stay numbers, Decimals are strings,
    times ISO 8601, json values as they are (`JSON_NULL` as the text "null").
    Rows for clients are encoded by column type (`RowWire`), not with this.
    """
    if value is None or isinstance(value, str | bool | int | dict):
        return value
    if value is JSON_NULL:
        return "null"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return _numeric(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytea(value)
    if isinstance(value, list | tuple):
        return [untyped_json(item) for item in value]
    raise TypeError(f"cannot encode a {type(value).__name__} value as JSON: {value!r}")


# -- JSON -> Python ---------------------------------------------------------

_INTEGER = re.compile(r"[-+]?\d+")
_INT_BITS = {"int2": 16, "int4": 32, "int8": 64, "oid": 33}


def _wrong(type_name: str, value: object, expected: str) -> TypeError:
    got = f"{type(value).__name__} {reprlib.repr(value)}"  # bounded: values may nest deeply
    return TypeError(f"{type_name}: expected {expected}, got {got}")


def _from_text(type_name: str, text: str, parse: Callable[[str], T], what: str) -> T:
    """`parse(text)`; its error as a ValueError naming the type and the text."""
    try:
        return parse(text)
    except (ValueError, InvalidOperation):
        raise ValueError(f"{type_name}: bad {what} {text!r}") from None


def _from_hex(text: str) -> bytes:
    return bytes.fromhex(text[2:])  # after the "\\x" prefix


def _int_from_json(type_name: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _INTEGER.fullmatch(value)
    ):
        number = int(value)
    else:
        raise _wrong(type_name, value, "an integer")
    bits = _INT_BITS[type_name]
    if type_name == "oid":
        if not 0 <= number < 2**32:
            raise ValueError(f"oid: {number} is out of range")
    elif not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        raise ValueError(f"{type_name}: {number} is out of range")
    return number


def _numeric_from_json(type_name: str, value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else Decimal(str(value))
    if isinstance(value, str):
        return _from_text(type_name, value, Decimal, "number")
    raise _wrong(type_name, value, "a number or a decimal string")


def _float_from_json(type_name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return _from_text(type_name, value, float, "number")
    raise _wrong(type_name, value, "a number")


def _typed_or_text(
    python_type: type, parse: Callable[[str], Any] | None, expected: str
) -> Converter:
    """A converter taking the typed value itself, or (with `parse`) its text form."""

    def convert(type_name: str, value: object) -> Any:
        if isinstance(value, python_type):
            return value
        if parse is not None and isinstance(value, str):
            return _from_text(type_name, value, parse, "value")
        raise _wrong(type_name, value, expected)

    return convert


_bool_from_json = _typed_or_text(bool, None, "true or false")
_str_from_json = _typed_or_text(str, None, "a string")
_uuid_from_json = _typed_or_text(UUID, UUID, "a UUID string")


def _same(value: Any) -> Any:
    return value


def _parsed_str(
    parse: Parser, python_type: type, finish: Callable[[Any], Any] = _same
) -> Converter:
    """A converter taking ISO 8601 strings (or the typed value itself)."""

    def convert(type_name: str, value: object) -> Any:
        try:
            if isinstance(value, python_type) and not (
                python_type is date and isinstance(value, datetime)
            ):
                return finish(value)
            if not isinstance(value, str):
                raise _wrong(type_name, value, f"an ISO 8601 / {type_name} string")
            return finish(parse(value))
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"{type_name}: bad value {value!r} ({exc})") from None

    return convert


def _naive(value: datetime) -> datetime:
    # Postgres ignores an offset given for a timestamp without time zone.
    return value.replace(tzinfo=None)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:  # no offset: UTC, the capture sessions' TimeZone
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _interval_from_text(text: str) -> timedelta:
    if "P" in text:
        return parse_duration(text)
    return parse_interval(text)


def _bytea_from_json(type_name: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.startswith("\\x"):
        return _from_text(type_name, value, _from_hex, "hex")
    raise _wrong(type_name, value, 'a "\\\\x<hex>" string')


def _json_from_json(type_name: str, value: object) -> Any:
    # The wire form is the JSON text; a typed value (a dict, JSON_NULL, 3) is taken as is.
    if not isinstance(value, str):
        return value
    try:
        return parse_json(value)  # too deep for Python: UnrepresentableValue, a ValueError
    except ValueError as exc:
        raise ValueError(f"{type_name}: bad JSON text {reprlib.repr(value)} ({exc})") from None


CONVERTERS: dict[str, Converter] = {
    "int2": _int_from_json,
    "int4": _int_from_json,
    "int8": _int_from_json,
    "oid": _int_from_json,
    "numeric": _numeric_from_json,
    "float4": _float_from_json,
    "float8": _float_from_json,
    "bool": _bool_from_json,
    "text": _str_from_json,
    "varchar": _str_from_json,
    "bpchar": _str_from_json,
    "name": _str_from_json,
    "uuid": _uuid_from_json,
    "date": _parsed_str(parse_date, date),
    "time": _parsed_str(time.fromisoformat, time),
    "timetz": _parsed_str(time.fromisoformat, time),
    "timestamp": _parsed_str(parse_timestamp, datetime, _naive),
    "timestamptz": _parsed_str(parse_timestamp, datetime, _utc),
    "interval": _parsed_str(_interval_from_text, timedelta),
    "json": _json_from_json,
    "jsonb": _json_from_json,
    "bytea": _bytea_from_json,
}


def from_json(type_name: str, value: Any) -> Any:
    """A JSON-able value (client parameter, wire row) -> the typed Python value.

    The inverse of `to_wire` for a column of `type_name`; the typed value
    itself is accepted too, and JSON numbers for int8 and numeric. None is
    SQL NULL. Raises TypeError / ValueError naming the type and the value
    when it does not fit.
    """
    if value is None:
        return None
    name = canonical(type_name)
    convert = CONVERTERS.get(name)
    if convert is not None:
        return convert(name, value)
    if name.endswith("[]"):
        element = element_type(name)
        return _array_from_json(element, CONVERTERS.get(element, _str_from_json), value)
    return _str_from_json(name, value)


def _array_from_json(element: str, convert: Converter, value: object, depth: int = 1) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _wrong(f"{element}[]", value, "a list")
    if depth > 6:  # Postgres's MAXDIM
        raise ValueError(f"{element}[]: more than 6 array dimensions")
    return [
        None
        if item is None
        else _array_from_json(element, convert, item, depth + 1)
        if isinstance(item, list) and convert is not _json_from_json
        else convert(element, item)
        for item in value
    ]
