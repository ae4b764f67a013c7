"""The Python client's SQLite replica: applied by key, all or nothing, resumable."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from examples.python_client.replica import Replica
from pgsift.subscriptions.jsonvalues import JSON_NULL

QUERY = "SELECT id, title FROM issues WHERE team_id = $1"


def change(op: str, id: int, title: str | None = None) -> dict[str, object]:
    row = None if title is None else {"id": id, "title": title}
    return {"op": op, "key": {"id": id}, "row": row}


def test_changes_apply_by_key(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "r.sqlite")
    replica.register("q", QUERY, [1])
    replica.apply("q", [change("INSERT", 1, "a"), change("INSERT", 2, "b")])
    replica.apply("q", [change("UPDATE", 1, "a2"), change("DELETE", 2), change("INSERT", 3, "c")])
    # Repeating a message changes nothing; an update of an unknown row inserts it.
    replica.apply("q", [change("UPDATE", 1, "a2"), change("DELETE", 2), change("UPDATE", 4, "d")])
    assert replica.rows("q") == [
        {"id": 1, "title": "a2"}, {"id": 3, "title": "c"}, {"id": 4, "title": "d"}
    ]
    assert replica.row("q", {"id": 3}) == {"id": 3, "title": "c"}
    assert replica.row("q", {"id": 2}) is None
    # Keys and rows sent as JSON text are the same keys and rows.
    replica.apply("q", [{"op": "DELETE", "key": '{"id": 4}', "row": None}])
    assert replica.count("q") == 2


def test_cursor_is_kept_only_for_a_complete_copy(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "r.sqlite")
    replica.register("q", QUERY, [1])
    replica.apply("q", [change("INSERT", 1, "a")], cursor="5-0")
    assert replica.state("q").resume_cursor is None
    replica.apply("q", [], cursor="6-0", up_to_date=True)
    assert replica.state("q").resume_cursor == "6-0"
    replica.apply("q", [change("UPDATE", 1, "b")], cursor="7-0")
    replica.apply("q", [change("UPDATE", 1, "c")], cursor=None)
    assert replica.state("q").resume_cursor == "7-0"


def test_a_message_applies_all_or_nothing(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "r.sqlite")
    replica.register("q", QUERY, [1])
    replica.apply("q", [change("INSERT", 1, "a")], cursor="1-0", up_to_date=True)
    with pytest.raises(ValueError, match="unknown change op"):
        replica.apply("q", [change("DELETE", 1), {"op": "MERGE", "key": {"id": 2}}], cursor="2-0")
    assert replica.rows("q") == [{"id": 1, "title": "a"}]
    assert replica.state("q").cursor == "1-0"


def test_state_survives_reopening_and_a_changed_query_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    replica = Replica(path)
    replica.register("q", QUERY, [1])
    replica.register("other", QUERY, [2])
    replica.apply("q", [change("INSERT", 1, "a")], cursor="3-0", up_to_date=True)
    replica.close()

    reopened = Replica(path)
    assert reopened.names() == ["other", "q"]
    same = reopened.register("q", QUERY, [1])
    assert (same.resume_cursor, reopened.count("q")) == ("3-0", 1)
    changed = reopened.register("q", QUERY, [2])
    assert (changed.resume_cursor, reopened.count("q")) == (None, 0)
    reopened.apply("q", [change("INSERT", 1, "a")], cursor="4-0", up_to_date=True)
    reopened.reset("q")
    assert (reopened.state("q").cursor, reopened.count("q")) == (None, 0)


def test_bad_names_are_refused(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="query name"):
        replica.register('x"; DROP TABLE sync_queries; --', QUERY)
    with pytest.raises(KeyError):
        replica.state("missing")


def test_values_are_restored_exactly_by_column_type(tmp_path: Path) -> None:
    replica = Replica(tmp_path / "r.sqlite")
    replica.register("q", "SELECT id, points, meta FROM issues", [])
    big = 2**53 + 1
    points = "1234567890123456789012345678901234567890.5"
    rows = [
        {"op": "INSERT", "key": {"id": str(big)}, "row": {"id": str(big), "points": points,
                                                         "meta": "null"}},
        {"op": "INSERT", "key": {"id": "2"}, "row": {"id": "2", "points": None, "meta": None}},
    ]
    types = {"id": "int8", "points": "numeric", "meta": "jsonb"}
    replica.apply("q", rows, cursor="1-0", up_to_date=True, types=types)
    replica.close()
    reopened = Replica(tmp_path / "r.sqlite")
    assert reopened.types("q") == types
    assert reopened.values("q") == [  # in the order of the keys' wire text
        {"id": 2, "points": None, "meta": None},
        {"id": big, "points": Decimal(points), "meta": JSON_NULL},
    ]
    # A key given with Python values finds the row stored under its wire form.
    assert reopened.row("q", {"id": big}) == rows[0]["row"]
