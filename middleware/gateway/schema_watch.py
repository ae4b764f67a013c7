"""Which feed entries change the schema this gateway serves: flagged changes, new tables.

Capture flags a table whose columns changed (`FeedEntry.schema_changes`), but not
a table's first appearance: it cannot tell a table created just now from one
written for the first time since the feed began, and flagging every table once
would end every subscription on it with `mustRefetch`. The gateway can tell: a
change of a table that its catalog does not hold is of a table created since the
catalog was read. Either way the gateway re-reads the catalog (which rebuilds the
typed GraphQL schema: `pgsift.middleware.graphql.live_schema`); a new table has
no subscriptions yet, so nothing refetches for it.

A table the catalog still lacks after the re-read (one without a primary key)
asks only once, so the catalog is never re-read per entry.
"""

from __future__ import annotations

from collections.abc import Callable

from pgsift.middleware.feed.entry import FeedEntry
from pgsift.subscriptions.catalog import Catalog


class SchemaWatch:
    """Calls `on_change(tables)` for each entry that changes or adds tables of the catalog."""

    def __init__(self, on_change: Callable[[tuple[str, ...]], None]) -> None:
        self._on_change = on_change
        self._known: frozenset[str] = frozenset()
        self._asked: set[str] = set()  # tables not in the catalog that a re-read was asked for

    def use_catalog(self, catalog: Catalog) -> None:
        """The catalog now served (read at start and after each schema change)."""
        self._known = frozenset(catalog.tables)

    def observe(self, entry: FeedEntry) -> None:
        """Call before routing `entry`: a re-read it asks for serves the entries after it."""
        changed = entry.schema_changes
        # One set per entry (a big one holds a chunk of a single table mostly); the
        # subset test is the whole cost when every table is known.
        tables = {change.table for change in entry.changes}
        if not tables <= self._known:
            new = tables - self._known - self._asked
            if new:
                self._asked |= new
                changed = (*changed, *sorted(new))
        if changed:
            self._on_change(changed)
