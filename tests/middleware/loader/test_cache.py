"""RowCache's clock, without a server: which fetches may store what, in any order."""

from __future__ import annotations

from pgsift.middleware.loader.cache import Cached, RowCache

T = "public.items"


def test_a_fetch_started_before_a_change_may_not_store() -> None:
    cache = RowCache(max_rows=10)
    started = cache.begin_fetch()
    cache.changed(T, (1,))
    assert not cache.store(T, (1,), {"v": 1}, started)
    assert cache.store(T, (2,), {"v": 1}, started)  # other rows are unaffected
    cache.end_fetch(started)
    assert cache.get(T, (1,)) is None
    assert cache.get(T, (2,)) == Cached({"v": 1})


def test_a_later_started_fetch_wins_whatever_the_finishing_order() -> None:
    cache = RowCache(max_rows=10)
    early, late = cache.begin_fetch(), cache.begin_fetch()
    assert cache.store(T, (1,), {"v": "late"}, late)
    assert not cache.store(T, (1,), {"v": "early"}, early)
    cache.end_fetch(late)
    cache.end_fetch(early)
    assert cache.get(T, (1,)) == Cached({"v": "late"})


def test_truncate_refuses_every_older_fetch_of_the_table() -> None:
    cache = RowCache(max_rows=10)
    started = cache.begin_fetch()
    cache.store(T, (1,), {"v": 1}, started)
    cache.truncated(T)
    assert cache.get(T, (1,)) is None
    assert not cache.store(T, (2,), None, started)
    assert cache.store("public.other", (2,), None, started)
    cache.end_fetch(started)
    assert cache.store(T, (2,), None, cache.begin_fetch())
    assert cache.get(T, (2,)) == Cached(None)


def test_forget_all_empties_the_cache_and_refuses_every_older_fetch() -> None:
    cache = RowCache(max_rows=10)
    started = cache.begin_fetch()
    cache.store(T, (1,), {"v": 1}, started)
    cache.forget_all()
    assert cache.get(T, (1,)) is None and len(cache) == 0
    assert not cache.store("public.other", (2,), None, started)
    cache.end_fetch(started)
    assert cache.store(T, (1,), {"v": 2}, cache.begin_fetch())
    assert cache.get(T, (1,)) == Cached({"v": 2})


def test_change_stamps_are_kept_only_while_older_fetches_run() -> None:
    cache = RowCache(max_rows=10)
    cache.changed(T, (1,))  # nothing running: nothing to remember
    assert not cache._changed
    started = cache.begin_fetch()
    cache.changed(T, (1,))
    assert len(cache._changed) == 1
    cache.end_fetch(started)
    assert not cache._changed


def test_least_recently_used_rows_go_first() -> None:
    cache = RowCache(max_rows=2)
    stamp = cache.begin_fetch()
    cache.store(T, (1,), {"v": 1}, stamp)
    cache.store(T, (2,), {"v": 2}, stamp)
    cache.get(T, (1,))
    cache.store(T, (3,), {"v": 3}, stamp)
    assert cache.get(T, (2,)) is None
    assert cache.get(T, (1,)) is not None
    assert len(cache) == 2
