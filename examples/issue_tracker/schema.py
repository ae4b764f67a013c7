"""The issue tracker's schema, applied from `schema.sql`."""

from __future__ import annotations

from pathlib import Path

import psycopg

SCHEMA_FILE = Path(__file__).with_name("schema.sql")

# Parents before children: the order to load them in (and reverse to drop).
TABLES: tuple[str, ...] = (
    "teams",
    "users",
    "team_members",
    "issues",
    "comments",
    "labels",
    "issue_labels",
)


def apply_schema(conn: psycopg.Connection[object]) -> None:
    """Create the tables, types and indexes in a database that has none of them."""
    with conn.transaction():
        conn.execute(SCHEMA_FILE.read_text(encoding="utf-8").encode())


def drop_schema(conn: psycopg.Connection[object]) -> None:
    """Drop everything `apply_schema` created (the data with it)."""
    with conn.transaction():
        conn.execute(
            "DROP TABLE IF EXISTS "
            + ", ".join(reversed(TABLES))
            + " CASCADE; DROP TYPE IF EXISTS issue_status"
        )
