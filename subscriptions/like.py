"""LIKE patterns (`%`, `_`, backslash escapes) matched without backtracking.

A pattern is cut at its unescaped `%` into segments of fixed length (literal
characters and `_`, which is exactly one character). A value matches when the
first segment matches at its start, the last at its end, and every segment in
between occurs, in order, in what is left between them. Taking the leftmost
occurrence of each middle segment is exact for such patterns (a later
occurrence never leaves more room for the rest), so a match costs at most
(length of the value) x (length of the pattern) character steps, whatever the
pattern: no regex, no backtracking (`%a%a%a%a%a%a%a%a%b` against a long run of
`a` is as cheap as any other pattern).
"""

from __future__ import annotations

import re
from functools import lru_cache

from pgsift.subscriptions.casefold import pg_lower


class LikePatternError(ValueError):
    """A pattern Postgres rejects at run time (it ends with the escape character)."""


class _Segment:
    """A run of pattern characters between two `%`: literals and `_` wildcards."""

    __slots__ = ("length", "literal", "regex")

    def __init__(self, items: list[str | None]) -> None:
        # None is `_`; a segment without `_` is searched with str methods, one with
        # `_` with a regex of literals and `.` only (no quantifier: linear per start).
        self.length = len(items)
        if all(item is not None for item in items):
            self.literal: str | None = "".join(item for item in items if item is not None)
            self.regex: re.Pattern[str] | None = None
        else:
            self.literal = None
            self.regex = re.compile(
                "".join("." if item is None else re.escape(item) for item in items), re.DOTALL
            )

    def at(self, text: str, start: int) -> bool:
        """Whether the segment matches `text` exactly at `start` (the caller checked the room)."""
        if self.literal is not None:
            return text.startswith(self.literal, start)
        assert self.regex is not None
        return self.regex.match(text, start) is not None

    def find(self, text: str, start: int, end: int) -> int:
        """The leftmost match wholly inside `text[start:end]`, or -1."""
        if self.literal is not None:
            return text.find(self.literal, start, end)
        assert self.regex is not None
        found = self.regex.search(text, start, end)
        return -1 if found is None else found.start()


class LikePattern:
    """A compiled LIKE pattern: `matches(text)` is `text LIKE pattern` (case-sensitive)."""

    __slots__ = ("_first", "_last", "_middle", "_wild", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        segments: list[list[str | None]] = [[]]
        chars = iter(pattern)
        for char in chars:
            if char == "\\":
                escaped = next(chars, None)
                if escaped is None:
                    raise LikePatternError("LIKE pattern must not end with escape character")
                segments[-1].append(escaped)
            elif char == "%":
                segments.append([])
            elif char == "_":
                segments[-1].append(None)
            else:
                segments[-1].append(char)
        # Without a `%` the one segment must cover the whole value.
        self._wild = len(segments) > 1
        self._first = _Segment(segments[0])
        self._last = _Segment(segments[-1])
        self._middle = tuple(_Segment(items) for items in segments[1:-1] if items)

    def matches(self, text: str) -> bool:
        first, last = self._first, self._last
        if not self._wild:
            return len(text) == first.length and first.at(text, 0)
        end = len(text) - last.length
        if end < first.length or not first.at(text, 0) or not last.at(text, end):
            return False
        position = first.length
        for segment in self._middle:
            found = segment.find(text, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True

    def __repr__(self) -> str:
        return f"LikePattern({self.pattern!r})"


@lru_cache(maxsize=4096)
def like_pattern(pattern: str, *, insensitive: bool = False) -> LikePattern:
    """The matcher of the strings `pattern` LIKEs (shared between shapes through the cache).

    ILIKE in a UTF-8 database is `lower(text) LIKE lower(pattern)`, so the
    insensitive variant lowers the pattern here and callers lower the text with
    `pg_lower`.
    """
    return LikePattern(pg_lower(pattern) if insensitive else pattern)
