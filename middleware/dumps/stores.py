"""Opening the dump store the settings name: the `dumps_dir` directory, else Redis."""

from __future__ import annotations

import redis

from pgsift.middleware.dumps.file_store import FileDumpStore
from pgsift.middleware.dumps.redis_store import RedisDumpStore
from pgsift.middleware.dumps.store import DumpStore
from pgsift.middleware.settings import Settings


def open_store(settings: Settings, client: redis.Redis[bytes], database: str) -> DumpStore:
    """The store the settings name: the `dumps_dir` directory if set, else Redis."""
    if settings.dumps_dir:
        return FileDumpStore(settings.dumps_dir, database)
    return RedisDumpStore(client, database)
