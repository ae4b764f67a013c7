"""Throwaway local Postgres and Redis for the demo and the test fixtures."""

from pgsift.middleware.embedded.postgres import EmbeddedPostgres
from pgsift.middleware.embedded.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis"]
