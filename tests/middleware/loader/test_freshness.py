"""After `observe` returns, no caller gets a version older than the observed change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.change import Change
from tests.middleware.loader.conftest import CATALOG, LoaderFactory, until_waiting_on_lock

LSN = iter(range(1000, 10**6))


def entry(*changes: Change, schema_changes: tuple[str, ...] = ()) -> FeedEntry:
    return FeedEntry(
        lsn=next(LSN), xid=1, commit_time=datetime.now(UTC), changes=changes,
        schema_changes=schema_changes,
    )


def title_update(table: str, key: int, title: str) -> Change:
    new = {"id": key, "team_id": key % 3, "title": title, "secret": f"s{key}"}
    return Change(table=table, op="update", key={"id": key}, new=new, old=None)


async def test_fetch_started_before_a_change_neither_serves_nor_caches_the_old_row(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader(window_s=0.0)
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("SELECT pg_advisory_lock(42)")
        # A's SELECT takes its snapshot (title "item 1") and then waits at the gate.
        before = asyncio.create_task(loader.load("items_gated", 1, {}))
        await until_waiting_on_lock(items_url)

        writer.execute("UPDATE items SET title = 'v2' WHERE id = 1")
        loader.observe(entry(title_update("public.items_gated", 1, "v2")))

        # B asks after the observe: it must not join A's fetch, which may be older.
        after = asyncio.create_task(loader.load("items_gated", 1, {}))
        for _ in range(3000):  # a second statement, or (with the bug) none: ~30 s at most
            if loader.stats.statements == 2 or after.done():
                break
            await asyncio.sleep(0.01)
        assert loader.stats.statements == 2
        await until_waiting_on_lock(items_url, waiters=2)
        writer.execute("SELECT pg_advisory_unlock(42)")

        old, new = await asyncio.gather(before, after)

    assert old is not None and old["title"] == "item 1"  # A asked before the change
    assert new is not None and new["title"] == "v2"
    # A's row was not cached: a later caller gets v2 from the cache, not "item 1".
    again = await loader.load("items_gated", 1, {})
    assert again is not None and again["title"] == "v2"
    assert loader.stats.statements == 2


async def test_fetch_finishing_after_a_change_does_not_fill_the_cache(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader(window_s=0.0)
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("SELECT pg_advisory_lock(42)")
        before = asyncio.create_task(loader.load("items_gated", 1, {}))
        await until_waiting_on_lock(items_url)
        writer.execute("UPDATE items SET title = 'v2' WHERE id = 1")
        loader.observe(entry(title_update("public.items_gated", 1, "v2")))
        writer.execute("SELECT pg_advisory_unlock(42)")
        old = await before

    after = await loader.load("items_gated", 1, {})

    assert old is not None and old["title"] == "item 1"
    assert after is not None and after["title"] == "v2"
    assert loader.stats.statements == 2


async def test_observed_change_replaces_a_cached_row(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader()
    first = await loader.load("items", 3, {})
    assert first is not None and first["title"] == "item 3"
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("UPDATE items SET title = 'changed' WHERE id = 3")

    stale = await loader.load("items", 3, {})  # the feed has not said so yet
    loader.observe(entry(title_update("public.items", 3, "changed")))
    fresh = await loader.load("items", 3, {})

    assert stale == first
    assert fresh is not None and fresh["title"] == "changed"


async def test_inserts_deletes_and_key_moves_invalidate_every_key_they_touch(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader()
    assert await loader.load_many("items", [4, 500, 600], {}) == [
        {"id": 4, "team_id": 1, "title": "item 4", "secret": "s4"}, None, None,
    ]
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("INSERT INTO items VALUES (500, 0, 'new', 'x')")
        writer.execute("UPDATE items SET id = 600 WHERE id = 4")
    row600 = {"id": 600, "team_id": 1, "title": "item 4", "secret": "s4"}
    loader.observe(entry(
        Change("public.items", "insert", {"id": 500}, {"id": 500, "team_id": 0}, None),
        Change("public.items", "update", {"id": 600}, row600, {"id": 4}),
    ))

    rows = await loader.load_many("items", [4, 500, 600], {}, ["id", "title"])

    assert rows == [None, {"id": 500, "title": "new"}, {"id": 600, "title": "item 4"}]


async def test_truncate_and_schema_change_forget_the_table(
    make_loader: LoaderFactory, items_url: str
) -> None:
    loader = await make_loader()
    await loader.load_many("items", [1, 2], {})
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("TRUNCATE items")
    loader.observe(entry(Change("public.items", "truncate", None, None, None)))
    assert await loader.load_many("items", [1, 2], {}) == [None, None]

    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("INSERT INTO items VALUES (1, 1, 'back', 's')")
    await loader.load("items", 2, {})
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("ALTER TABLE items ADD COLUMN extra int4 DEFAULT 7")
    loader.observe(entry(schema_changes=("public.items",)))
    tables = CATALOG.to_dict()
    tables["public.items"]["columns"]["extra"] = "int4"
    loader.use_catalog(Catalog.from_dict(tables, enums=CATALOG.enums))

    assert await loader.load_many("items", [1, 2], {}, ["title", "extra"]) == [
        {"title": "back", "extra": 7}, None,
    ]


async def test_changes_to_unknown_tables_are_ignored(make_loader: LoaderFactory) -> None:
    loader = await make_loader()
    await loader.load("items", 1, {})
    loader.observe(entry(Change("public.other", "delete", {"id": 1}, None, None)))
    await loader.load("items", 1, {})
    assert loader.stats.statements == 1


async def test_after_forget_all_every_row_is_read_again(
    make_loader: LoaderFactory, items_url: str
) -> None:
    """The tailer skipped entries: a change the loader never saw must still show."""
    loader = await make_loader(window_s=0.0)
    first = await loader.load("items", 1, {})
    assert first is not None and first["title"] == "item 1"
    with psycopg.connect(items_url, autocommit=True) as writer:
        writer.execute("UPDATE items SET title = 'unseen' WHERE id = 1")  # never observed
    cached = await loader.load("items", 1, {})
    assert cached is not None and cached["title"] == "item 1"  # the cache, as designed
    loader.forget_all()
    fresh = await loader.load("items", 1, {})
    assert fresh is not None and fresh["title"] == "unseen"
    assert loader.stats.statements == 2
