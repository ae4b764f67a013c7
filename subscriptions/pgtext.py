"""Postgres text output -> Python values, exactly as psycopg 3 returns them by default.

Capture decodes pgoutput's text with these parsers; snapshots and batch loads
read the same values through psycopg (`pgsift.middleware.pgtypes`), so the
rest of pgsift sees one representation (the tests use psycopg 3 on a real
server as the oracle).

The text forms parsed are those of a session with `DateStyle=ISO`,
`IntervalStyle=postgres` and `extra_float_digits>=1` (the defaults); the
session TimeZone may be anything, timestamptz values come out in UTC.

Where psycopg 3 raises by default, a capture process must not stall on a
valid row, so:

* `infinity` / `-infinity` dates and timestamps map to `date.max` / `date.min`
  and `datetime.max` / `datetime.min` (UTC-aware for timestamptz) - the
  mapping psycopg's documentation suggests for infinity loaders.
* A json / jsonb value that is the JSON `null` is `JSON_NULL`
  (`pgsift.subscriptions.jsonvalues`), where psycopg returns None, SQL NULL's value.
* Values Python cannot hold (BC or year > 9999 dates, `24:00:00` times, too deep
  json) raise `UnrepresentableValue`, a `ValueError` whose message names the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from uuid import UUID

from pgsift.subscriptions.jsonvalues import load_json
from pgsift.subscriptions.typenames import canonical, element_type

Parser = Callable[[str], Any]
T = TypeVar("T")


class UnrepresentableValue(ValueError):
    """A valid Postgres value with no Python equivalent (BC dates, 24:00:00)."""


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


def _or_infinite(parse: Callable[[str], T], lowest: T, highest: T, what: str) -> Callable[[str], T]:
    """A parser mapping `-infinity` / `infinity` to `lowest` / `highest`, other text through
    `parse`, whose error is an `UnrepresentableValue` naming `what` and the text."""

    def parse_value(text: str) -> T:
        if text == "infinity":
            return highest
        if text == "-infinity":
            return lowest
        try:
            return parse(text)
        except (ValueError, OverflowError):
            raise UnrepresentableValue(f"{what} {text!r} is outside Python's range") from None

    return parse_value


def _parse_time(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise UnrepresentableValue(f"time {text!r} cannot be represented") from None


def _utc_from_text(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is UTC:  # the text was UTC already (capture's session is)
        return value
    if value.tzinfo is None:
        raise ValueError("no offset")
    return value.astimezone(UTC)


parse_date = _or_infinite(date.fromisoformat, date.min, date.max, "date")
parse_timestamp = _or_infinite(datetime.fromisoformat, datetime.min, datetime.max, "timestamp")
_parse_timestamptz = _or_infinite(
    _utc_from_text,
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    "timestamptz",
)


# IntervalStyle=postgres: "1 year 2 mons -3 days +04:05:06.5" (every part optional).
_INTERVAL = re.compile(
    r"(?:([-+]?\d+) years? ?)?"
    r"(?:([-+]?\d+) mons? ?)?"
    r"(?:([-+]?\d+) days? ?)?"
    r"(?:([-+])?(\d+):(\d+):(\d+)(?:\.(\d{1,6}))?)?$"
)


def parse_interval(text: str) -> timedelta:
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


def parse_json(text: str | bytes) -> Any:
    """json / jsonb text -> its value; the JSON value `null` is `JSON_NULL`, not None."""
    try:
        return load_json(text)
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
    "date": parse_date,
    "time": _parse_time,
    "timetz": _parse_time,
    "timestamp": parse_timestamp,
    "timestamptz": _parse_timestamptz,
    "interval": parse_interval,
    "json": parse_json,
    "jsonb": parse_json,
    "bytea": _parse_bytea,
}


def parse_text(type_name: str, text: str) -> Any:
    """Postgres text output of a `type_name` value -> the value psycopg 3 returns.

    An unknown type name (an enum, say) yields the text itself.
    """
    return parser_for(type_name)(text)


def parser_for(type_name: str) -> Parser:
    """The function `parse_text` uses for `type_name`; look it up once per column."""
    name = canonical(type_name)
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
