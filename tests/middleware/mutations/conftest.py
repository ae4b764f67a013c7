"""A database with the test app's tables (`app.SCHEMA`) and the mutation ledger."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgsift.middleware.mutations import ledger
from tests.middleware.mutations import app


@pytest.fixture
def app_database(database_url: str) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(app.SCHEMA)
        conn.execute(ledger.CREATE_SQL)
    yield database_url
