"""Column values <-> their JSON form: what clients send as parameters and receive in rows.

`to_json` turns a decoded value into its JSON-able form, `from_json` a
JSON-able value (a client parameter, a row read back from a dump) into the
typed value for a column of a given type.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from pgsift.subscriptions.durations import format_duration, parse_duration
from pgsift.subscriptions.pgtext import Parser, parse_date, parse_interval, parse_timestamp
from pgsift.subscriptions.typenames import canonical, element_type

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
Converter = Callable[[str, object], Any]


def to_json(value: Any) -> Json:
    """A decoded value -> its JSON-able wire form (the inverse of `from_json`).

    Numbers stay numbers except non-finite floats ("NaN", "Infinity",
    "-Infinity") and Decimals (strings, exact); datetimes, dates and times are
    ISO 8601; timedeltas ISO 8601 durations (`P1DT2H3M4.5S`, `-PT1S`); UUIDs
    strings; bytes `\\x<hex>`; lists element-wise; json values as they are.
    """
    if value is None or isinstance(value, str | bool | int | dict):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    raise TypeError(f"cannot encode a {type(value).__name__} value as JSON: {value!r}")


# -- JSON -> Python ---------------------------------------------------------

_INTEGER = re.compile(r"[-+]?\d+")
_INT_BITS = {"int2": 16, "int4": 32, "int8": 64, "oid": 33}


def _wrong(type_name: str, value: object, expected: str) -> TypeError:
    got = f"{type(value).__name__} {reprlib.repr(value)}"  # bounded: values may nest deeply
    return TypeError(f"{type_name}: expected {expected}, got {got}")


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
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"numeric: bad number {value!r}") from None
    raise _wrong(type_name, value, "a number or a decimal string")


def _float_from_json(type_name: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{type_name}: bad number {value!r}") from None
    raise _wrong(type_name, value, "a number")


def _bool_from_json(type_name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _wrong(type_name, value, "true or false")


def _str_from_json(type_name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise _wrong(type_name, value, "a string")


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


def _uuid_from_json(type_name: str, value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            raise ValueError(f"uuid: bad value {value!r}") from None
    raise _wrong(type_name, value, "a UUID string")


def _bytea_from_json(type_name: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.startswith("\\x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError(f"bytea: bad hex {value!r}") from None
    raise _wrong(type_name, value, 'a "\\\\x<hex>" string')


def _json_from_json(type_name: str, value: object) -> Any:
    return value


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

    The inverse of `to_json` for a column of `type_name`; the typed value
    itself is accepted too. None is SQL NULL. Raises TypeError / ValueError
    naming the type and the value when it does not fit.
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
