"""The served schema follows the catalog: built at start, rebuilt when the schema changes.

Capture puts every schema change in the feed; the gateway re-reads the catalog
then (`SyncService.refresh_catalog`) and calls `use_catalog`, which builds the
typed model anew and, when it differs, a new library schema (built in a worker
thread, off the event loop the feed tailer runs on) that every operation from
then on uses - no restart. Subscriptions running on a changed table
end with `mustRefetch` (the session does that for every schema change of its
table) and, subscribing again, meet the new schema. A rebuild that fails (a
new table whose name clashes) keeps the schema served so far and logs why; at
start the same failure stops the gateway with the `NamingError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import PgsiftError
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.typed_schema import typed_schema
from pgsift.subscriptions.typemodel import TypeModel

log = logging.getLogger(__name__)


class LiveSchema:
    """`serve(build(model))` for the typed model of each new catalog."""

    def __init__(
        self,
        build: Callable[[TypeModel], Any],
        serve: Callable[[Any], None],
        *,
        policies: Mapping[str, Policy] | None,
        tables: Iterable[str] | None,
    ) -> None:
        self._build, self._serve = build, serve
        self._policies = policies
        self._tables = None if tables is None else tuple(tables)
        self.model: TypeModel | None = None  # the model of the schema served
        self._wanted: TypeModel | None = None  # the newest model asked for
        self._lock = asyncio.Lock()
        self._rebuilds: set[asyncio.Task[None]] = set()

    def start(self, catalog: Catalog) -> None:
        """Serve the schema of `catalog`; NamingError (or the app's ConfigError) stops start."""
        self._apply(typed_schema(catalog, self._policies, self._tables))

    def use_catalog(self, catalog: Catalog) -> None:
        """A catalog read after a schema change: rebuild when the typed model changed.

        The library schema is built in a worker thread (a second or so for many tables,
        which the feed tailer sharing the event loop must not wait for); the newest
        model wins when changes come faster than builds.
        """
        try:
            model = typed_schema(catalog, self._policies, self._tables)
        except PgsiftError:
            log.exception("the GraphQL schema could not be rebuilt; serving the previous one")
            return
        if model == (self._wanted or self.model):
            return
        self._wanted = model
        self._rebuilds.add(task := asyncio.get_running_loop().create_task(self._rebuild(model)))
        task.add_done_callback(self._rebuilds.discard)

    async def _rebuild(self, model: TypeModel) -> None:
        async with self._lock:
            if model is not self._wanted:
                return  # a newer catalog came meanwhile: its build follows
            try:
                schema = await asyncio.to_thread(self._build, model)
            except PgsiftError:
                log.exception("the GraphQL schema could not be rebuilt; serving the previous one")
                return
            self._serve(schema)
            self.model = model
            log.info("serving the typed GraphQL schema of %d tables", len(model.tables))

    def _apply(self, model: TypeModel) -> None:
        self._serve(self._build(model))
        self.model = model
        log.info("serving the typed GraphQL schema of %d tables", len(model.tables))
