"""SchemaWatch: which feed entries make the gateway re-read its catalog (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.schema_watch import SchemaWatch
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change

CATALOG = Catalog.from_dict({"public.issues": {"columns": {"id": "int8"}, "primary_key": ["id"]}})


def _entry(*tables: str, schema_changes: tuple[str, ...] = ()) -> FeedEntry:
    changes = tuple(Change(t, "insert", {"id": 1}, {"id": 1}, None) for t in tables)
    return FeedEntry(1, 1, datetime.now(UTC), changes, schema_changes=schema_changes)


def _watch() -> tuple[SchemaWatch, list[tuple[str, ...]]]:
    asked: list[tuple[str, ...]] = []
    watch = SchemaWatch(asked.append)
    watch.use_catalog(CATALOG)
    return watch, asked


def test_changes_of_known_tables_ask_nothing() -> None:
    watch, asked = _watch()
    watch.observe(_entry("public.issues", "public.issues"))
    assert asked == []


def test_flagged_schema_changes_are_passed_on() -> None:
    watch, asked = _watch()
    watch.observe(_entry("public.issues", schema_changes=("public.issues",)))
    assert asked == [("public.issues",)]


def test_a_table_the_catalog_lacks_asks_once() -> None:
    """Not once per entry: a table that stays unknown (no primary key) is asked about once."""
    watch, asked = _watch()
    for _ in range(3):
        watch.observe(_entry("public.issues", "public.labels", "public.audit"))
    watch.use_catalog(CATALOG)  # the re-read still lacks them
    watch.observe(_entry("public.labels"))
    assert asked == [("public.audit", "public.labels")]


def test_a_new_table_and_a_flagged_one_in_one_entry() -> None:
    watch, asked = _watch()
    watch.observe(_entry("public.labels", schema_changes=("public.issues",)))
    assert asked == [("public.issues", "public.labels")]
