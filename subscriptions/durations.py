"""ISO 8601 durations (`P1DT2H3M4.5S`, `-PT1S`): the JSON form of interval values."""

from __future__ import annotations

import re
from datetime import timedelta


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
