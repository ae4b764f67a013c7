"""LIKE patterns and Postgres case folding (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsift.subscriptions.casefold import pg_lower, pg_upper
from pgsift.subscriptions.like import LikePatternError, like_pattern


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
    assert like_pattern(pattern).matches(text) is expected


def test_trailing_escape_is_an_error() -> None:
    with pytest.raises(LikePatternError):
        like_pattern("abc\\")


def test_ilike_lowers_pattern_like_postgres() -> None:
    assert like_pattern("İ%", insensitive=True).matches(pg_lower("iX"))


def test_fold_characters() -> None:
    assert pg_lower("İ") == "i"  # Python: "i̇"
    assert pg_lower("ΑΣ") == "ασ"  # noqa: RUF001 (Python: final sigma)
    assert pg_upper("ß") == "ß"  # Python: "SS"
    assert pg_upper("ᾳ") == "ᾼ"  # Python: two letters
    assert pg_upper("ﬀ") == "ﬀ"  # Python: "FF"
    assert pg_lower("ABC") == "abc"


def test_backtracking_pattern_is_decided() -> None:
    # A regex `.*a.*a...b` backtracks exponentially here; the segment matcher is linear.
    pattern = like_pattern("%a%a%a%a%a%a%a%a%b")
    assert pattern.matches("a" * 50) is False
    assert pattern.matches("a" * 5000) is False
    assert pattern.matches("a" * 50 + "b") is True
    assert pattern.matches("a" * 7 + "b") is False
    assert pattern.matches("a" * 8 + "b") is True
    assert like_pattern("%a_a%a_%b").matches("a" * 5000) is False


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("a%c", "ac", True),
        ("a%a", "a", False),  # first and last segment must not overlap
        ("%aa%aa%", "aaa", False),
        ("%aa%aa%", "aaaa", True),
        ("%_%", "", False),
        ("%%", "", True),
        ("%b_", "abcb", False),
        ("%b_%", "abcb", True),
        ("\\%%\\_", "%x_", True),
        ("\\%%\\_", "x%_", False),
        ("_%_", "ab", True),
        ("%\\\\%", "a\\b", True),
    ],
)
def test_segments(pattern: str, text: str, expected: bool) -> None:
    assert like_pattern(pattern).matches(text) is expected


def _reference(pattern: str) -> re.Pattern[str]:
    """The plain regex translation (exact, but it backtracks): the test's oracle."""
    parts, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars)))
        else:
            parts.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
    return re.compile("".join(parts), re.DOTALL)


@settings(max_examples=500, deadline=None)
@given(
    pattern=st.text(alphabet="ab%_\\", max_size=8).filter(
        lambda p: (len(p) - len(p.rstrip("\\"))) % 2 == 0
    ),
    text=st.text(alphabet="ab%_\\", max_size=10),
)
def test_agrees_with_the_regex_translation(pattern: str, text: str) -> None:
    expected = _reference(pattern).fullmatch(text) is not None
    assert like_pattern(pattern).matches(text) is expected
