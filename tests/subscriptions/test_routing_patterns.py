"""The substring index that files LIKE / ILIKE shapes instead of scanning them."""

from __future__ import annotations

import pytest

from pgsift.subscriptions.change import Change
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.patterns import MAX_VALUE, FragmentIndex, literal_runs, pattern_grams
from pgsift.subscriptions.routing import RoutingIndex
from tests.subscriptions.routing_shapes import ISSUES, Cond, Spec, build


@pytest.mark.parametrize(
    ("pattern", "runs"),
    [
        ("%urgent%", ["urgent"]),
        ("fix%", ["fix"]),
        ("%a_bcd%", ["a", "bcd"]),
        (r"%50\%%", ["50%"]),
        (r"%a\_b%", ["a_b"]),
        ("%", []),
        ("_%_", []),
        ("", []),
    ],
)
def test_literal_runs_are_what_every_match_contains(pattern: str, runs: list[str]) -> None:
    assert literal_runs(pattern) == runs


def test_grams_are_short_windows_of_the_runs_lowered_like_postgres() -> None:
    assert pattern_grams("%URGent%", insensitive=True) == ("urg", "rge", "gen", "ent")
    assert pattern_grams("%URG%", insensitive=False) == ("URG",)
    assert pattern_grams("%İx%a", insensitive=True) == ("ix", "a")
    assert pattern_grams("%_%", insensitive=True) == ()


def test_similar_patterns_spread_over_grams() -> None:
    index: RoutingIndex[str] = RoutingIndex()
    for i in range(100, 130):
        index.add(build(Spec(("id",), (Cond("title", "ilike", f"%x{i}%"),))), str(i))
    assert index.stats().patterned == 30
    row = {"id": 1, "title": "about x123"}
    assert index.route(Change(ISSUES, "insert", {"id": 1}, row, None)) == [
        ("123", Event("insert", {"id": 1}, {"id": 1}))
    ]


def test_fragment_index_finds_entries_whose_gram_the_value_contains() -> None:
    index: FragmentIndex[str] = FragmentIndex()
    index.add("urg", "a")
    index.add("x1", "b")
    index.add("x", "c")
    assert sorted(set(index.candidates("an urgent fix1"))) == ["a", "b", "c"]
    assert sorted(set(index.candidates("x"))) == ["c"]
    assert list(index.candidates("nothing here")) == []
    index.remove("x", "c")
    assert list(index.candidates("x")) == []
    index.remove("urg", "a")
    index.remove("x1", "b")
    assert not index


def test_long_values_make_every_entry_a_candidate() -> None:
    index: FragmentIndex[str] = FragmentIndex()
    index.add("abc", "a")
    assert list(index.candidates("z" * (MAX_VALUE + 1))) == ["a"]
