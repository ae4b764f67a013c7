"""The loader's test database: items (int8 key), memberships (uuid + int4 key),
labels (enum key), items_text (text key) and items_gated (a view of items whose
reads stop at an advisory lock, to hold a fetch in flight after its snapshot)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgsift.middleware.loader import BatchLoader
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.policy import Policy
from tests.conftest import PostgresServer

ORG = uuid.UUID("00000000-0000-0000-0000-00000000000a")
SCHEMA = """
CREATE TYPE label_kind AS ENUM ('bug', 'feature');
CREATE TABLE items (id int8 PRIMARY KEY, team_id int4 NOT NULL, title text, secret text);
INSERT INTO items SELECT i, i % 3, 'item ' || i, 's' || i FROM generate_series(1, 200) i;
CREATE TABLE memberships (org_id uuid, user_id int4, role text, PRIMARY KEY (org_id, user_id));
INSERT INTO memberships SELECT '{org}', u, CASE WHEN u = 1 THEN 'owner' ELSE 'member' END
    FROM generate_series(1, 5) u;
CREATE TABLE labels (kind label_kind PRIMARY KEY, color text);
CREATE TABLE items_text (name text PRIMARY KEY);
INSERT INTO labels VALUES ('bug', 'red');
-- A SELECT on items_gated takes its snapshot, then waits for advisory lock 42.
CREATE FUNCTION gate() RETURNS bool LANGUAGE plpgsql VOLATILE AS
    $$ BEGIN PERFORM pg_advisory_xact_lock_shared(42); RETURN true; END $$;
CREATE VIEW items_gated AS SELECT * FROM items WHERE gate();
""".replace("{org}", str(ORG))

ITEM_COLUMNS = {"id": "int8", "team_id": "int4", "title": "text", "secret": "text"}
CATALOG = Catalog.from_dict(
    {
        "public.items": {"columns": ITEM_COLUMNS, "primary_key": ["id"]},
        "public.items_gated": {"columns": ITEM_COLUMNS, "primary_key": ["id"]},
        "public.memberships": {
            "columns": {"org_id": "uuid", "user_id": "int4", "role": "text"},
            "primary_key": ["org_id", "user_id"],
        },
        "public.items_text": {"columns": {"name": "text"}, "primary_key": ["name"]},
        "public.labels": {"columns": {"kind": "label_kind", "color": "text"},
                          "primary_key": ["kind"]},
    },
    enums={"label_kind": ["bug", "feature"]},
)

LoaderFactory = Callable[..., Awaitable[BatchLoader]]


@pytest.fixture
def items_url(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return database_url


@pytest.fixture
async def make_loader(items_url: str) -> AsyncIterator[LoaderFactory]:
    """Build loaders on the items database (or `url`); all closed after the test."""
    loaders: list[BatchLoader] = []

    async def make(
        *, url: str | None = None, catalog: Catalog = CATALOG,
        policies: Mapping[str, Policy] | None = None, **options: Any,
    ) -> BatchLoader:
        loader = await BatchLoader.connect(
            url or items_url, catalog=catalog, policies=policies, **options
        )
        loaders.append(loader)
        return loader

    yield make
    for loader in loaders:
        await loader.close()


@dataclass
class StatementLog:
    """Statements the server itself logged for this test's database (log_statement=all)."""

    path: Path
    offset: int

    def count(self, fragment: str) -> int:
        with self.path.open(encoding="utf-8", errors="replace") as log:
            log.seek(self.offset)
            return sum(
                1 for line in log
                if fragment in line and ("LOG:  statement:" in line or "LOG:  execute" in line)
            )


@pytest.fixture
def statement_log(postgres_server: PostgresServer, items_url: str) -> Iterator[StatementLog | None]:
    """The embedded server's log; None on an external server, whose log is out of reach."""
    if postgres_server.embedded is None:
        yield None
        return
    database = psycopg.conninfo.conninfo_to_dict(items_url)["dbname"]
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" SET log_statement = \'all\'')
    path = postgres_server.embedded.base_dir / "postgres.log"
    yield StatementLog(path, path.stat().st_size)


async def until_waiting_on_lock(url: str, waiters: int = 1) -> None:
    """Return once `waiters` backends of `url`'s database wait for a lock (bounded by
    pytest's timeout); other tests' databases on the shared server do not count."""
    with psycopg.connect(url, autocommit=True) as watcher:
        while True:
            row = watcher.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database()"
            ).fetchone()
            if row is not None and row[0] >= waiters:
                return
            await asyncio.sleep(0.01)


POLICIES = {
    "public.items": Policy.from_config(
        "items", {"columns": ["id", "team_id", "title"], "row": "team_id = ANY(auth.team_ids)"},
        catalog=CATALOG,
    ),
    # Every column and row; the other tables have no policy, so callers may not read them.
    "public.memberships": Policy.from_config("memberships", {}, catalog=CATALOG),
}
