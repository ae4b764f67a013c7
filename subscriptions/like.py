"""LIKE patterns (`%`, `_`, backslash escapes) as compiled regular expressions."""

from __future__ import annotations

import re
from functools import lru_cache

from pgsift.subscriptions.casefold import pg_lower


class LikePatternError(ValueError):
    """A pattern Postgres rejects at run time (it ends with the escape character)."""


@lru_cache(maxsize=4096)
def like_regex(pattern: str, *, insensitive: bool = False) -> re.Pattern[str]:
    """The regex that fully matches exactly the strings `pattern` LIKEs.

    ILIKE in a UTF-8 database is `lower(text) LIKE lower(pattern)`, so the
    insensitive variant lowers the pattern here and callers lower the text with
    `pg_lower`. Shared between shapes through the cache.
    """
    if insensitive:
        pattern = pg_lower(pattern)
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise LikePatternError("LIKE pattern must not end with escape character")
            parts.append(re.escape(escaped))
        elif char == "%":
            if not parts or parts[-1] != ".*":
                parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)
