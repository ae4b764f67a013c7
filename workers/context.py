"""What a job needs to run: the wiring of its database, and shapes parsed as the gateway does.

Jobs take only their own arguments (a query, params, claims); connections and
policies come from the worker's settings (`pgsift.toml` / `PGSIFT_*`), which
`pgsift worker` exports to its environment so every forked job sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.settings import Settings, load_settings
from pgsift.middleware.wiring import Wiring
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape


@dataclass(frozen=True)
class JobContext(Wiring):
    """The wiring of the worker's database (`pgsift.middleware.wiring`), for jobs."""

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> Self:
        settings = settings or load_settings()
        if not settings.database_url or not settings.redis_url:
            raise ConfigError("workers need database_url and redis_url (PGSIFT_DATABASE_URL, "
                              "PGSIFT_REDIS_URL or pgsift.toml)")
        return super().from_settings(settings, **options)

    @property
    def reader(self) -> FeedReader:
        return self.feed_reader()

    def catalog(self) -> Catalog:
        """The database's catalog as it is now (a job may run long after the last one)."""
        return self.catalog_source.refresh()

    def shape(
        self,
        query: str,
        params: list[Any] | None = None,
        claims: dict[str, Any] | None = None,
        catalog: Catalog | None = None,
    ) -> tuple[Shape, ShapeLayout]:
        """Parse a shape exactly as the gateway does (same catalog, same policies)."""
        catalog = catalog or self.catalog()
        shape = Shape.parse(query, params=list(params or []), catalog=catalog,
                            claims=dict(claims or {}), policies=self.policies)
        return shape, ShapeLayout.of(shape, catalog)
