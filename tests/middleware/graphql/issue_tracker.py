"""The typed SDL of the example issue tracker, from a real database and its pgsift.toml."""

from __future__ import annotations

from pathlib import Path

import psycopg

from examples.issue_tracker.schema import apply_schema
from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.graphql.sdl import typed_sdl
from pgsift.middleware.mutations import ledger
from pgsift.middleware.settings import load_settings
from pgsift.subscriptions import Catalog, policies_from_config

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "issue_tracker" / "pgsift.toml"
GOLDEN = ROOT / "tests" / "fixtures" / "graphql" / "issue_tracker.graphql"


def issue_tracker_catalog(database_url: str) -> Catalog:
    """The catalog of a fresh database holding the issue tracker's schema and, as
    `capture --setup` creates it for the example's [mutators], the ledger."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_schema(conn)  # type: ignore[arg-type]
        conn.execute(ledger.CREATE_SQL)
        return load_catalog(conn)


def issue_tracker_sdl(database_url: str, *, with_policies: bool = True) -> str:
    """The SDL a client of the issue tracker sees (its policies), or every tracked table."""
    catalog = issue_tracker_catalog(database_url)
    settings = load_settings(CONFIG, environ={})
    if not with_policies:
        return typed_sdl(catalog, tables=settings.capture_tables)
    return typed_sdl(catalog, policies_from_config(settings.policies, catalog=catalog))
