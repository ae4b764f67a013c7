"""LIKE patterns and Postgres case folding (pure)."""

from __future__ import annotations

import pytest
from pgsift.subscriptions.casefold import pg_lower, pg_upper
from pgsift.subscriptions.like import LikePatternError, like_regex


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("a%", "abc", True),
        ("a_c", "abc", True),
        ("a_c", "ac", False),
        ("%", "", True),
        ("_", "😀", True),
        ("a\\%", "a%", True),
        ("a\\%", "ab", False),
        ("a\\_", "a_", True),
        ("\\\\", "\\", True),
        ("\\a", "a", True),
        ("a.*", "a.*", True),
        ("a.*", "abc", False),
        ("%\n%", "x\ny", True),
    ],
)
def test_like(pattern: str, text: str, expected: bool) -> None:
    assert (like_regex(pattern).fullmatch(text) is not None) is expected


def test_trailing_escape_is_an_error() -> None:
    with pytest.raises(LikePatternError):
        like_regex("abc\\")


def test_ilike_lowers_pattern_like_postgres() -> None:
    assert like_regex("İ%", insensitive=True).fullmatch(pg_lower("iX"))


def test_fold_characters() -> None:
    assert pg_lower("İ") == "i"  # Python: "i̇"
    assert pg_lower("ΑΣ") == "ασ"  # noqa: RUF001 (Python: final sigma)
    assert pg_upper("ß") == "ß"  # Python: "SS"
    assert pg_upper("ᾳ") == "ᾼ"  # Python: two letters
    assert pg_upper("ﬀ") == "ﬀ"  # Python: "FF"
    assert pg_lower("ABC") == "abc"
