"""Postgres `lower()` / `upper()` on text, exactly as the embedded cluster computes them.

The cluster runs with LC_CTYPE `C.UTF-8` (glibc), where Postgres maps each
character on its own through `towlower` / `towupper`. Python's `str.lower()`
differs in three ways: it applies full (one-to-many) mappings (`'İ'.lower()` is
two characters, `'ß'.upper()` is `'SS'`), the context-sensitive final sigma
(capital sigma at the end of a word lowers to U+03C2, Postgres gives U+03C3),
and for the iota-subscript letters it uses the full instead of the simple
uppercase. So the tables below
are Python's single-character mappings plus the exceptions measured against
glibc 2.36 (`tests/subscriptions/test_casefold.py` checks every code point
against the live server).
"""

from __future__ import annotations

from functools import cache

# Characters past this one are never cased (the last cased one is U+1E943).
_LAST_CASED = 0x1E9FF

# glibc maps U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE to plain `i`.
_LOWER_EXCEPTIONS = {0x0130: 0x0069}
# Simple uppercase of the Greek letters with ypogegrammeni (Python gives e.g. "ἈΙ").
_UPPER_EXCEPTIONS = {
    **{lower: lower + 8 for lower in range(0x1F80, 0x1F88)},
    **{lower: lower + 8 for lower in range(0x1F90, 0x1F98)},
    **{lower: lower + 8 for lower in range(0x1FA0, 0x1FA8)},
    0x1FB3: 0x1FBC,
    0x1FC3: 0x1FCC,
    0x1FF3: 0x1FFC,
}


def _simple_table(upper: bool, exceptions: dict[int, int]) -> dict[int, int]:
    table: dict[int, int] = {}
    for code in range(_LAST_CASED + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        mapped = char.upper() if upper else char.lower()
        if len(mapped) == 1 and mapped != char:
            table[code] = ord(mapped)
    table.update(exceptions)
    return table


@cache
def _lower_table() -> dict[int, int]:
    return _simple_table(False, _LOWER_EXCEPTIONS)


@cache
def _upper_table() -> dict[int, int]:
    return _simple_table(True, _UPPER_EXCEPTIONS)


def pg_lower(text: str) -> str:
    """Postgres `lower(text)` under LC_CTYPE C.UTF-8."""
    if text.isascii():
        return text.lower()
    return text.translate(_lower_table())


def pg_upper(text: str) -> str:
    """Postgres `upper(text)` under LC_CTYPE C.UTF-8."""
    if text.isascii():
        return text.upper()
    return text.translate(_upper_table())
