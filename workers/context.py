"""What a job needs to run: settings, Redis, the dump store, the feed reader.

Jobs take only their own arguments (a query, params, claims); connections and
policies come from the worker's settings (`pgsift.toml` / `PGSIFT_*`), which
`pgsift worker` exports to its environment so every forked job sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import redis

from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.dumps.store import DumpStore
from pgsift.middleware.dumps.stores import open_store
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.feed.keys import database_of as database_name
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.settings import Settings, load_settings
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.policy import Policy, policies_from_config
from pgsift.subscriptions.shape import Shape


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    database_url: str
    database: str
    client: redis.Redis[bytes]
    store: DumpStore
    reader: FeedReader
    policies: dict[str, Policy]

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> JobContext:
        settings = settings or load_settings()
        if not settings.database_url or not settings.redis_url:
            raise ConfigError("workers need database_url and redis_url (PGSIFT_DATABASE_URL, "
                              "PGSIFT_REDIS_URL or pgsift.toml)")
        database = database_name(settings.database_url)
        client = redis.Redis.from_url(settings.redis_url)
        return cls(
            settings=settings,
            database_url=settings.database_url,
            database=database,
            client=client,
            store=open_store(settings, client, database),
            reader=FeedReader(client, database),
            policies=dict(policies_from_config(settings.policies)),
        )

    def catalog(self) -> Catalog:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return load_catalog(conn)

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

    def close(self) -> None:
        self.client.close()
