"""`BatchLoader`: rows by key for every caller of one gateway process.

Keys asked for within a short window by any number of callers become one
statement per table; a key already being fetched is shared by all who wait for
it; each caller then gets only what its own policy lets it read. Recently read
rows are cached, and `observe` (called with every feed entry before the gateway
routes it) drops the rows it changes, so that after it returns no caller gets a
version older than the change.

That holds only while the feed itself is current: when capture stops (Redis full,
capture down) changes keep happening that no feed entry tells the cache about.
With `freshness` set (the gateway sets it), every load while the feed is stale
skips the cache and reads Postgres.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgsift.middleware.catalog import CatalogSource
from pgsift.middleware.errors import ConfigError, LoaderError, LoaderUnavailableError
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.loader.batch import WindowedDataLoader, all_done
from pgsift.middleware.loader.cache import Row, RowCache, RowKey
from pgsift.middleware.loader.fetch import fetch_rows
from pgsift.middleware.loader.request import PolicyBinder, check_key_count, prepare, row_key
from pgsift.middleware.loader.slices import sliced
from pgsift.middleware.pgpool import LivePool
from pgsift.middleware.pgtypes import configure_async
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.catalog import Catalog, Table
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.policy import Policy, policies_from_config
from pgsift.subscriptions.wire import RowWire

Pool = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]
Where = tuple[str, list[Any]] | None  # a bound policy's `to_sql_where()`
Found = dict[RowKey, Row]


class FeedView(Protocol):
    """Whether the feed the cache is kept fresh by is current (`FeedFreshness`)."""

    def fresh(self) -> bool: ...


@dataclass
class LoaderStats:
    """Counters for metrics and benchmarks."""

    statements: int = 0  # SELECTs sent to Postgres
    keys_fetched: int = 0  # distinct keys in those SELECTs
    keys_requested: int = 0  # keys callers asked for
    cache_hits: int = 0
    cache_bypasses: int = 0  # loads that skipped the cache because the feed was stale


class BatchLoader:
    """Batched, shared, cached, per-caller-filtered loads of rows by primary key."""

    def __init__(
        self,
        pool: Pool,
        *,
        catalog: Catalog,
        policies: Mapping[str, Policy] | None = None,
        window_s: float = 0.001,
        max_batch: int = 500,
        cache_rows: int = 10_000,
        timeout_s: float = 5.0,
        max_pending: int = 50_000,
        max_keys: int = 10_000,
        owns_pool: bool = False,
    ) -> None:
        for name, value in (("window_s", window_s), ("timeout_s", timeout_s)):
            if value < 0:
                raise ConfigError(f"loader: {name} must be >= 0, got {value}")
        counts = (("max_batch", max_batch), ("max_pending", max_pending), ("max_keys", max_keys))
        for name, count in counts:
            if count < 1:
                raise ConfigError(f"loader: {name} must be >= 1, got {count}")
        if cache_rows < 0:
            raise ConfigError(f"loader: cache_rows must be >= 0, got {cache_rows}")
        self._pool = pool
        self._owns_pool = owns_pool
        self._catalog = catalog
        self._binder = PolicyBinder(catalog, policies or {})
        self._window_s = window_s
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        self._reserved = 0  # keys allowed in, not yet queued
        self.max_keys = max_keys  # per call; GraphQL's `rows` also bounds a document's total
        self._cache = RowCache(max_rows=cache_rows)
        self._loaders: dict[str, WindowedDataLoader[RowKey, Row | None]] = {}
        self._closed = False
        self.stats = LoaderStats()
        self.freshness: FeedView | None = None  # None: the feed is taken as current

    @classmethod
    async def connect(
        cls,
        database_url: str,
        *,
        catalog: Catalog | None = None,
        policies: Mapping[str, Policy] | None = None,
        pool_size: int = 4,
        timeout_s: float = 5.0,
        **options: Any,
    ) -> BatchLoader:
        """A loader with its own pool of `pool_size` connections to `database_url`.

        Without a `catalog`, the database's own is read (`load_catalog`).
        """
        if pool_size < 1:
            raise ConfigError(f"loader: pool_size must be >= 1, got {pool_size}")
        if catalog is None:
            catalog = await asyncio.to_thread(CatalogSource(database_url).get)
        # Idle connections die with a Postgres restart: LivePool checks before lending one out.
        pool: Pool = LivePool(
            database_url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout_s,
            name="pgsift-loader",
            configure=configure_async,  # values as capture decodes them, TimeZone UTC
            kwargs={
                "autocommit": True,
                "options": f"-c statement_timeout={max(1, round(timeout_s * 1000))}",
            },
        )
        await pool.open(wait=False)
        return cls(
            pool, catalog=catalog, policies=policies, timeout_s=timeout_s, owns_pool=True,
            **options,
        )

    @classmethod
    async def from_settings(
        cls,
        settings: Settings,
        *,
        catalog: Catalog | None = None,
        policies: Mapping[str, Policy] | None = None,
    ) -> BatchLoader:
        """A loader configured by `settings` (`loader_*`; policies from `[policies]`)."""
        if not settings.database_url:
            raise ConfigError("loader: database_url is not set")
        if catalog is None:
            catalog = await asyncio.to_thread(CatalogSource(settings.database_url).get)
        return await cls.connect(
            settings.database_url,
            catalog=catalog,
            policies=(
                policies_from_config(settings.policies, catalog=catalog)
                if policies is None else policies
            ),
            pool_size=settings.loader_pool_size,
            timeout_s=settings.loader_timeout_s,
            window_s=settings.loader_window_ms / 1000.0,
            max_batch=settings.loader_max_batch,
            cache_rows=settings.loader_cache_rows,
            max_pending=settings.loader_max_pending,
            max_keys=settings.loader_max_keys,
        )

    async def load(
        self,
        table: str,
        key: Any,
        claims: Mapping[str, Any],
        columns: Sequence[str] | None = None,
    ) -> Row | None:
        """One row as `claims` may see it, or None (missing and forbidden look alike)."""
        return (await self.load_many(table, [key], claims, columns))[0]

    async def load_many(
        self,
        table: str,
        keys: Sequence[Any],
        claims: Mapping[str, Any],
        columns: Sequence[str] | None = None,
    ) -> list[Row | None]:
        """Rows for `keys` in order, projected to `columns` (default: all readable).

        Keys are primary-key values as JSON or Python values; an object
        `{column: value}` for a composite key; at most `max_keys` of them
        (TooManyKeysError, before any is looked at). Raises LoaderError for a
        bad request, LoaderUnavailableError when Postgres is down, slow or the
        loader is full. Many keys are handled a slice at a time (`slices`), so
        that other callers are served meanwhile.
        """
        if self._closed:
            raise LoaderUnavailableError("the loader is closed")
        check_key_count(len(keys), self.max_keys)
        request = prepare(self._catalog, self._binder, table, claims, columns)
        typed = await sliced(keys, request.typed_key)
        name = request.table.name
        rows: list[Row | None]
        if (where := request.sql_policy()) is not None:
            # The policy reads rows the cache is not keyed by: Postgres judges it, now.
            self.stats.cache_bypasses += 1
            found = await self._select(request.table, list(dict.fromkeys(typed)), where)
            return [request.visible(found.get(key)) for key in typed]
        if self.freshness is not None and not self.freshness.fresh():
            rows = [None] * len(typed)
            misses = list(range(len(typed)))
            self.stats.cache_bypasses += 1
        else:
            cached = await sliced(typed, lambda _, key: self._cache.get(name, key))
            rows = [None if hit is None else hit.row for hit in cached]
            misses = [index for index, hit in enumerate(cached) if hit is None]
        self.stats.keys_requested += len(rows)
        self.stats.cache_hits += len(rows) - len(misses)
        if misses:
            loader = self._table_loader(request.table)
            new = {typed[i] for i in misses if typed[i] not in loader.inflight}
            self._make_room(len(new))
            # Held until the keys are queued (and so counted in flight), a slice at a time.
            self._reserved += len(new)
            try:
                waits = await sliced(misses, lambda _, index: loader.load(typed[index]))
            finally:
                self._reserved -= len(new)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await all_done(set(waits))
            except TimeoutError:
                raise LoaderUnavailableError(
                    f"no rows from Postgres within {self._timeout_s:g} s (down or slow)"
                ) from None
            loaded = await sliced(waits, lambda _, future: future.result())
            for index, row in zip(misses, loaded, strict=True):
                rows[index] = row
        return await sliced(rows, lambda _, row: request.visible(row))

    def _make_room(self, new: int) -> None:
        """Refuse `new` keys past `max_pending` in flight: for good when they could never
        fit, for now when other callers' keys fill the loader."""
        check_key_count(new, self._max_pending, "loader_max_pending")
        pending = self._pending()
        if pending + new > self._max_pending:
            raise LoaderUnavailableError(
                f"the loader is full ({pending} keys pending, {new} more asked, "
                f"loader_max_pending is {self._max_pending}); try again shortly"
            )

    def observe(self, entry: FeedEntry) -> None:
        """Forget the rows `entry` changes; call before routing the entry to clients."""
        for table in entry.schema_changes:
            self._forget_table(table)
        for change in entry.changes:
            if change.op == "truncate":
                self._forget_table(change.table)
                continue
            schema = self._catalog.find(change.table)
            if schema is None:
                continue
            keys = list(_changed_keys(schema, change))
            if not keys:
                # No key to aim at (no replica identity): be safe, forget the table.
                self._forget_table(schema.name)
                continue
            loader = self._loaders.get(schema.name)
            for key in keys:
                self._cache.changed(schema.name, key)
                if loader is not None:
                    loader.clear(key)

    def forget_all(self) -> None:
        """The feed skipped entries (trimmed, unreadable): any cached row may be stale."""
        self._cache.forget_all()
        for loader in self._loaders.values():
            loader.clear_all()

    def row_wire(self, table: str) -> RowWire:
        """Encodes rows of `table` that this loader returned into their wire form."""
        schema = self._catalog.find(table)
        columns = schema.columns if schema is not None else {}
        return RowWire(tuple(columns), tuple(columns.values()))

    def use_catalog(self, catalog: Catalog, policies: Mapping[str, Policy] | None = None) -> None:
        """Switch to a reloaded catalog (after a schema change); policies are bound anew.

        Rows read with the old columns are forgotten, and fetches still running
        with them may no longer fill the cache.
        """
        for name in list(self._loaders):
            self._forget_table(name)
        self._loaders.clear()
        self._catalog = catalog
        kept = self._binder.policies if policies is None else policies
        self._binder = PolicyBinder(catalog, kept)

    async def close(self) -> None:
        """Refuse new loads, fail queued ones, close the pool if the loader opened it."""
        self._closed = True
        for loader in self._loaders.values():
            loader.fail_queued(LoaderUnavailableError("the loader is closed"))
        if self._owns_pool:
            await self._pool.close()

    @property
    def cached_rows(self) -> int:
        return len(self._cache)

    def _pending(self) -> int:
        inflight = sum(len(loader.inflight) for loader in self._loaders.values())
        return inflight + self._reserved

    def _table_loader(self, table: Table) -> WindowedDataLoader[RowKey, Row | None]:
        loader = self._loaders.get(table.name)
        if loader is None:
            loader = WindowedDataLoader(
                functools.partial(self._fetch, table),
                window_s=self._window_s,
                max_batch_size=self._max_batch,
            )
            self._loaders[table.name] = loader
        return loader

    async def _fetch(
        self, table: Table, keys: list[RowKey]
    ) -> list[Row | LoaderError | None]:
        """DataLoader's batch function: one SELECT for `keys`, stored if still fresh."""
        started = self._cache.begin_fetch()
        found: dict[RowKey, Row | LoaderError]
        try:
            unique = list(dict.fromkeys(keys))
            try:
                found = dict(await self._select(table, unique))
            except _RejectedValue:
                # A value Postgres refuses (a NUL in text, say) fails the statement for the
                # whole batch: ask key by key, so that only its own callers get the error.
                found = {}
                for key in unique:
                    try:
                        found.update(await self._select(table, [key]))
                    except _RejectedValue as exc:
                        found[key] = LoaderError(f"key {list(key)!r} of {table.name}: {exc}")
            for key in unique:
                row = found.get(key)
                if not isinstance(row, LoaderError):
                    self._cache.store(table.name, key, row, started)
        finally:
            self._cache.end_fetch(started)
        return [found.get(key) for key in keys]

    async def _select(self, table: Table, keys: list[RowKey], where: Where = None) -> Found:
        try:
            async with self._pool.connection() as conn:
                self.stats.statements += 1
                self.stats.keys_fetched += len(keys)
                return await fetch_rows(conn, table, keys, where)
        except PoolTimeout as exc:
            raise LoaderUnavailableError(
                f"no connection to Postgres within {self._timeout_s:g} s"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise LoaderUnavailableError(
                f"loading from {table.name} took longer than {self._timeout_s:g} s"
            ) from exc
        except psycopg.OperationalError as exc:
            raise LoaderUnavailableError(f"Postgres is unavailable: {exc}") from exc
        except psycopg.DataError as exc:
            raise _RejectedValue(str(exc).strip()) from exc
        except psycopg.Error as exc:
            raise LoaderError(f"loading from {table.name} failed: {exc}") from exc

    def _forget_table(self, table: str) -> None:
        schema = self._catalog.find(table)
        name = table if schema is None else schema.name
        self._cache.truncated(name)
        loader = self._loaders.get(name)
        if loader is not None:
            loader.clear_all()


class _RejectedValue(LoaderError):
    """Postgres refused a key value of the statement (SQLSTATE class 22)."""


def _changed_keys(table: Table, change: Change) -> Iterator[RowKey]:
    """Every key the change touches: an update may move a row to a new key."""
    seen: set[RowKey] = set()
    for values in (change.key, change.old, change.new):
        if values is not None and all(column in values for column in table.primary_key):
            key = row_key(table, values)
            if key not in seen:
                seen.add(key)
                yield key
