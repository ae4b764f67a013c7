"""One wiring of pgsift's parts for one database, built once from the settings.

Every entry point builds a `Wiring` and takes what it needs from it: the
gateway app (`create_app`: the sync service, the bootstrap endpoint, the batch
loader), the workers (`JobContext` is a wiring), and the CLI commands through
them. So they cannot disagree on the database name, the catalog, the policies,
the keys or the dump store:

    wiring = Wiring.from_settings(settings)
    wiring.database                 # the name in every Redis key (`keys.database_of`)
    wiring.policies                 # [policies] of pgsift.toml, parsed once
    wiring.catalog_source.get()     # the catalog; `.refresh()` after a schema change
    wiring.client                   # the blocking Redis client (every wait bounded)
    wiring.jobs_client              # the Redis of RQ's queues (`jobs_redis_url`)
    wiring.async_redis(connections=8)   # an asyncio client of the caller's own
    wiring.feed_reader(), wiring.store, wiring.dump_finder()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

import redis
import redis.asyncio

from pgsift.middleware.bootstrap.finder import DumpFinder
from pgsift.middleware.catalog import CatalogSource
from pgsift.middleware.dumps.store import DumpStore
from pgsift.middleware.dumps.stores import open_store
from pgsift.middleware.errors import ConfigError
from pgsift.middleware.feed import keys
from pgsift.middleware.feed.reader import FeedReader
from pgsift.middleware.redis_clients import async_redis, is_cluster, sync_redis
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.policy import Policy, policies_from_config


@dataclass(frozen=True)
class Wiring:
    """What every part of pgsift shares for one database; see the module docstring."""

    settings: Settings
    database_url: str
    redis_url: str
    database: str
    client: redis.Redis[bytes]
    # RQ's queues and jobs: `client` itself, unless `jobs_redis_url` names another Redis.
    jobs_client: redis.Redis[bytes]
    store: DumpStore
    policies: Mapping[str, Policy]
    catalog_source: CatalogSource

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client: redis.Redis[bytes] | None = None
    ) -> Self:
        """Wire `settings` (`client`: a blocking Redis client to use instead of a new one)."""
        if not settings.database_url or not settings.redis_url:
            raise ConfigError(
                "database_url and redis_url are both needed (PGSIFT_DATABASE_URL, "
                "PGSIFT_REDIS_URL, pgsift.toml or --database-url / --redis-url)"
            )
        database = keys.database_of(settings.database_url)
        jobs_url = settings.jobs_redis_url or settings.redis_url
        if is_cluster(jobs_url):
            raise ConfigError(
                "redis_url is a Redis Cluster, and RQ (pgsift's job queue: dump builds, "
                "warming, trimming) needs a plain Redis: name one in jobs_redis_url "
                "(PGSIFT_JOBS_REDIS_URL, or redis_url in [jobs] of pgsift.toml)"
            )
        client = client if client is not None else sync_redis(settings.redis_url)
        jobs_client = client if jobs_url == settings.redis_url else sync_redis(jobs_url)
        policies = policies_from_config(settings.policies)
        return cls(
            settings=settings,
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            database=database,
            client=client,
            jobs_client=jobs_client,
            store=open_store(settings, client, database),
            policies=policies,
            catalog_source=CatalogSource(settings.database_url, policies),
        )

    @property
    def feed_stream(self) -> str:
        return keys.feed_stream(self.database)

    def feed_reader(self) -> FeedReader:
        """A blocking reader of the feed, on `client`."""
        return FeedReader(self.client, self.database)

    def async_redis(self, *, connections: int | None = None) -> redis.asyncio.Redis[bytes]:
        """A new asyncio client (of at most `connections`); the caller closes it."""
        return async_redis(self.redis_url, connections=connections)

    def dump_finder(self) -> DumpFinder:
        """The finder of fresh dumps to serve (`dumps_max_age_s`)."""
        return DumpFinder(
            self.client, self.database, self.store, max_age_s=self.settings.dumps_max_age_s
        )

    def close(self) -> None:
        self.client.close()
        if self.jobs_client is not self.client:
            self.jobs_client.close()
