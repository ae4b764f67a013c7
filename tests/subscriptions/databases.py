"""A named scratch database for a module of oracle tests, dropped afterwards; jsonb parameters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgsift.subscriptions.jsonvalues import JSON_NULL


@contextlib.contextmanager
def scratch_database(postgres_server: Any, name: str) -> Iterator[str]:
    """A fresh database `name` on the test server (dropped first if left over); its URL."""
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url_for(name)
    finally:
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def jsonb_param(value: Any) -> Any:
    """A jsonb value as a psycopg parameter: None stays SQL NULL, `JSON_NULL` is `null`."""
    if value is None:
        return None
    return Jsonb(None if value is JSON_NULL else value)
