"""Column values: Postgres text output -> Python values -> JSON form, and back.

Python values are exactly what psycopg 3 returns by default for the column type
(the tests use psycopg 3 on a real server as the oracle), so that capture,
snapshots and batch loads all hand the rest of pgsift one representation.

The text forms parsed are those of a session with `DateStyle=ISO`,
`IntervalStyle=postgres` and `extra_float_digits>=1` (the defaults); the
session TimeZone may be anything, timestamptz values come out in UTC.

Where psycopg 3 raises by default, a capture process must not stall on a
valid row, so:

* `infinity` / `-infinity` dates and timestamps map to `date.max` / `date.min`
  and `datetime.max` / `datetime.min` (UTC-aware for timestamptz) - the
  mapping psycopg's documentation suggests for infinity loaders;
  `from_json` accepts the strings "infinity" / "-infinity" too.
* Values Python cannot hold (BC or year > 9999 dates, `24:00:00` times, too deep
  json) raise `UnrepresentableValue`, a `ValueError` whose message names the value.

Names are Postgres type names (`int4`, `timestamptz`, an enum's name); arrays
are `<element>[]`. SQL spellings (`integer`, `timestamp with time zone`) and
internal array names (`_int4`) are accepted as aliases.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]
Parser = Callable[[str], Any]
Converter = Callable[[str, object], Any]


class UnrepresentableValue(ValueError):
    """A valid Postgres value with no Python equivalent (BC dates, 24:00:00)."""


ALIASES = {
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "decimal": "numeric",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


def _canonical(type_name: str) -> str:
    """Builtin names in their pg_type spelling; other names (enums) kept as given."""
    name = type_name.strip()
    if name.endswith("[]"):
        return _canonical(name[:-2]) + "[]"
    lowered = name.lower()
    if lowered in PARSERS:
        return lowered
    if lowered in ALIASES:
        return ALIASES[lowered]
    # `_int4` is pg_type's name of int4[]; only builtins, as `_x` may be a user type.
    if lowered.startswith("_") and lowered[1:] in PARSERS:
        return lowered[1:] + "[]"
    return name


def element_type(type_name: str) -> str:
    """`int4[]` -> `int4` (also `_int4`); raises ValueError for a non-array type."""
    name = _canonical(type_name)
    if not name.endswith("[]"):
        raise ValueError(f"{type_name!r} is not an array type")
    return name[:-2]


# -- text -> Python ---------------------------------------------------------


def _parse_bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError(f"bad bool text {text!r}")


def _parse_numeric(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"bad numeric text {text!r}") from None


def _parse_date(text: str) -> date:
    if text == "infinity":
        return date.max
    if text == "-infinity":
        return date.min
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UnrepresentableValue(f"date {text!r} is outside Python's range") from None


def _parse_time(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise UnrepresentableValue(f"time {text!r} cannot be represented") from None


def _parse_timestamp(text: str) -> datetime:
    if text == "infinity":
        return datetime.max
    if text == "-infinity":
        return datetime.min
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UnrepresentableValue(f"timestamp {text!r} is outside Python's range") from None


def _parse_timestamptz(text: str) -> datetime:
    if text == "infinity":
        return datetime.max.replace(tzinfo=UTC)
    if text == "-infinity":
        return datetime.min.replace(tzinfo=UTC)
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is UTC:  # the text was UTC already (capture's session is)
            return value
        if value.tzinfo is None:
            raise ValueError("no offset")
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UnrepresentableValue(f"timestamptz {text!r} is outside Python's range") from None


# IntervalStyle=postgres: "1 year 2 mons -3 days +04:05:06.5" (every part optional).
_INTERVAL = re.compile(
    r"(?:([-+]?\d+) years? ?)?"
    r"(?:([-+]?\d+) mons? ?)?"
    r"(?:([-+]?\d+) days? ?)?"
    r"(?:([-+])?(\d+):(\d+):(\d+)(?:\.(\d{1,6}))?)?$"
)


def _parse_interval(text: str) -> timedelta:
    # psycopg 3 counts a year as 365 days and a month as 30 days.
    match = _INTERVAL.match(text)
    if match is None or not text:
        raise ValueError(f"bad interval text {text!r} (IntervalStyle must be 'postgres')")
    years, months, days, sign, hours, minutes, seconds, fraction = match.groups()
    total_days = 365 * int(years or 0) + 30 * int(months or 0) + int(days or 0)
    micros = 0
    if hours is not None:
        micros = (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1_000_000
        if fraction:
            micros += int(fraction.ljust(6, "0"))
        if sign == "-":
            micros = -micros
    try:
        return timedelta(days=total_days, microseconds=micros)
    except OverflowError:
        raise UnrepresentableValue(f"interval {text!r} is outside Python's range") from None


def _parse_bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return _unescape_bytea(text)


def _unescape_bytea(text: str) -> bytes:
    """bytea_output=escape: printable bytes as is, `\\\\` and `\\ooo` escapes."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode()
            i += 1
        elif text[i + 1 : i + 2] == "\\":
            out.append(0x5C)
            i += 2
        else:
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
    return bytes(out)


def as_text(text: str) -> str:
    """The parser of text types, and of types pgsift does not know (enums): the text."""
    return text


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # valid in Postgres, too deep for Python: one row's error
        raise UnrepresentableValue(f"json nested too deeply ({len(text)} characters)") from None


PARSERS: dict[str, Parser] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "oid": int,
    "numeric": _parse_numeric,
    "float4": float,
    "float8": float,
    "bool": _parse_bool,
    "text": as_text,
    "varchar": as_text,
    "bpchar": as_text,
    "name": as_text,
    "uuid": UUID,
    "date": _parse_date,
    "time": _parse_time,
    "timetz": _parse_time,
    "timestamp": _parse_timestamp,
    "timestamptz": _parse_timestamptz,
    "interval": _parse_interval,
    "json": _parse_json,
    "jsonb": _parse_json,
    "bytea": _parse_bytea,
}


def is_known_type(type_name: str) -> bool:
    """True for the builtin types (and arrays of them) this module decodes."""
    name = _canonical(type_name)
    if name.endswith("[]"):
        return element_type(name) in PARSERS
    return name in PARSERS


def parse_text(type_name: str, text: str) -> Any:
    """Postgres text output of a `type_name` value -> the value psycopg 3 returns.

    An unknown type name (an enum, say) yields the text itself.
    """
    return parser_for(type_name)(text)


def parser_for(type_name: str) -> Parser:
    """The function `parse_text` uses for `type_name`; look it up once per column."""
    name = _canonical(type_name)
    parser = PARSERS.get(name)
    if parser is not None:
        return parser
    if name.endswith("[]"):
        element = PARSERS.get(element_type(name), as_text)
        return lambda text: parse_array(text, element)
    return as_text


def parse_array(text: str, parse_element: Parser) -> list[Any]:
    """Array text output (`{1,NULL,"a b"}`, nested, `[0:1]={...}`) -> nested lists.

    Bounds decorations are dropped, as psycopg 3 does. Elements are separated
    by commas (every builtin type but `box`).
    """
    body = text.partition("=")[2] if text.startswith("[") else text
    if not body.startswith("{"):
        raise ValueError(f"bad array text {text!r}")
    if body == "{}":
        return []
    try:
        return _parse_array_body(body, parse_element)
    except IndexError:
        raise ValueError(f"bad array text {text!r}") from None


def _parse_array_body(text: str, parse_element: Parser) -> list[Any]:
    stack: list[list[Any]] = []
    result: list[Any] = []
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "{":
            inner: list[Any] = []
            if stack:
                stack[-1].append(inner)
            else:
                result = inner
            stack.append(inner)
            i += 1
        elif char == "}":
            stack.pop()
            i += 1
            if not stack and i != end:
                raise IndexError("text after the closing brace")
        elif char == ",":
            i += 1
        elif char == '"':
            i += 1
            chunk: list[str] = []
            start = i
            while True:
                char = text[i]
                if char == '"':
                    break
                if char == "\\":
                    chunk.append(text[start:i])
                    start = i + 1
                    i += 2
                else:
                    i += 1
            chunk.append(text[start:i])
            stack[-1].append(parse_element("".join(chunk)))
            i += 1
        else:
            start = i
            while text[i] not in ",}":
                i += 1
            token = text[start:i].strip()
            stack[-1].append(None if token.upper() == "NULL" else parse_element(token))
    if stack:
        raise ValueError(f"unbalanced braces in array text {text!r}")
    return result


# -- Python -> JSON ---------------------------------------------------------


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


def format_duration(value: timedelta) -> str:
    """timedelta -> ISO 8601 duration in days, hours, minutes, seconds."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    days, rest = divmod(abs(micros), 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if fraction:
        clock += f"{seconds}.{fraction:06d}".rstrip("0") + "S"
    elif seconds or not (days or clock):
        clock += f"{seconds}S"
    if not days:
        return f"{sign}PT{clock}"
    return f"{sign}P{days}D" + (f"T{clock}" if clock else "")


_DURATION = re.compile(
    r"([-+])?P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:[.,](\d+))?S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration -> timedelta (a year is 365 days, a month 30, as psycopg)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"bad ISO 8601 duration {text!r}")
    sign, years, months, weeks, days, hours, minutes, seconds, fraction = match.groups()
    total = timedelta(
        days=365 * int(years or 0) + 30 * int(months or 0) + 7 * int(weeks or 0) + int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
        microseconds=int(fraction[:6].ljust(6, "0")) if fraction else 0,
    )
    return -total if sign == "-" else total


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
    return _parse_interval(text)


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
    "date": _parsed_str(_parse_date, date),
    "time": _parsed_str(time.fromisoformat, time),
    "timetz": _parsed_str(time.fromisoformat, time),
    "timestamp": _parsed_str(_parse_timestamp, datetime, _naive),
    "timestamptz": _parsed_str(_parse_timestamp, datetime, _utc),
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
    name = _canonical(type_name)
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
