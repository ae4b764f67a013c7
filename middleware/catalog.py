"""Build the subscriptions `Catalog` from a live Postgres database, and keep it.

`load_catalog` reads it; `CatalogSource` is the one place pgsift keeps it: read
on first use, again on `refresh` (after a schema change, or a query naming a
table that is not in it yet), and checked against the configured policies
each time it is read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import PolicyError
from pgsift.subscriptions.policy import Policy
from pgsift.subscriptions.shape import Shape

log = logging.getLogger(__name__)

# Type names as the rest of pgsift spells them: builtins by their internal name
# (int4, timestamptz, ...), domains by their base type, enums by name (schema-
# qualified outside public and pg_catalog), arrays as `<element>[]`.
_COLUMNS = """
SELECT n.nspname, c.relname, a.attname,
       CASE WHEN et.oid IS NOT NULL THEN et.typname ELSE bt.typname END AS typname,
       CASE WHEN et.oid IS NOT NULL THEN etn.nspname ELSE btn.nspname END AS typschema,
       et.oid IS NOT NULL AS is_array,
       COALESCE(et.typtype, bt.typtype) AS typtype,
       a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS not_null
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
JOIN pg_namespace btn ON btn.oid = bt.typnamespace
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
LEFT JOIN pg_namespace etn ON etn.oid = et.typnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
ORDER BY n.nspname, c.relname, a.attnum
"""

_PRIMARY_KEYS = """
SELECT n.nspname, c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary
ORDER BY n.nspname, c.relname, k.ord
"""

_REPLICA_IDENTITY = """
SELECT n.nspname, c.relname, c.relreplident = 'f'
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
"""

_ENUMS = """
SELECT n.nspname, t.typname, e.enumlabel
FROM pg_enum e
JOIN pg_type t ON t.oid = e.enumtypid
JOIN pg_namespace n ON n.oid = t.typnamespace
ORDER BY n.nspname, t.typname, e.enumsortorder
"""


def _type_name(schema: str, name: str, typtype: str) -> str:
    if typtype == "e" and schema not in ("public", "pg_catalog"):
        return f"{schema}.{name}"
    return name


def load_catalog(conn: psycopg.Connection[Any]) -> Catalog:
    """Every table with a primary key, its columns' type names and NOT NULL columns, and
    every enum's labels."""
    tables: dict[str, dict[str, Any]] = {}
    for schema, table, column, typname, typschema, is_array, typtype, not_null in conn.execute(
        _COLUMNS
    ).fetchall():
        type_name = _type_name(typschema, typname, typtype) + ("[]" if is_array else "")
        spec = tables.setdefault(
            f"{schema}.{table}", {"columns": {}, "primary_key": [], "not_null": []}
        )
        spec["columns"][column] = type_name
        if not_null:
            spec["not_null"].append(column)
    for schema, table, column in conn.execute(_PRIMARY_KEYS).fetchall():
        entry = tables.get(f"{schema}.{table}")
        if entry is not None:
            entry["primary_key"].append(column)
    for schema, table, full in conn.execute(_REPLICA_IDENTITY).fetchall():
        entry = tables.get(f"{schema}.{table}")
        if entry is not None:
            entry["replica_identity_full"] = full
    enums: dict[str, list[str]] = {}
    for schema, name, label in conn.execute(_ENUMS).fetchall():
        enums.setdefault(_type_name(schema, name, "e"), []).append(label)
    keyed = {name: spec for name, spec in tables.items() if spec["primary_key"]}
    return Catalog.from_dict(keyed, enums=enums)


def require_replica_identity(
    shape: Shape, catalog: Catalog, policies: Mapping[str, Policy] | None
) -> None:
    """PolicyError for a shape of a row-policy table without REPLICA IDENTITY FULL.

    Without the old row, routing cannot tell which shapes held an updated or
    deleted row, and sends the DELETE of its key to every shape of the table:
    callers whose policy hides the row would learn its primary key.
    """
    policy = (policies or {}).get(shape.table)
    table = catalog.find(shape.table)
    if policy is None or policy.row is None or table is None or table.replica_identity_full:
        return
    raise PolicyError(
        f"{shape.table} has a row policy but not REPLICA IDENTITY FULL, so its deletes"
        " would reach every subscriber; run"
        f" `ALTER TABLE {shape.table} REPLICA IDENTITY FULL` to subscribe to it"
    )


class CatalogSource:
    """A database's catalog, read once and again on `refresh` (blocking: use a thread)."""

    def __init__(self, database_url: str, policies: Mapping[str, Policy] | None = None) -> None:
        self._database_url = database_url
        self._policies = policies or {}
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self.read_at = 0.0  # time.monotonic() of the last read

    def get(self, max_age_s: float | None = None) -> Catalog:
        """The catalog as last read; read (again) first if there is none, or when it is
        older than `max_age_s`."""
        with self._lock:
            if self._catalog is None or (
                max_age_s is not None and time.monotonic() - self.read_at > max_age_s
            ):
                return self._read()
            return self._catalog

    def refresh(self) -> Catalog:
        """Read the catalog again (the schema changed)."""
        with self._lock:
            return self._read()

    def _read(self) -> Catalog:
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            catalog = load_catalog(conn)
        self._catalog, self.read_at = catalog, time.monotonic()
        for policy in self._policies.values():
            try:
                policy.check(catalog)
            except PolicyError as exc:
                # Not fatal: the table may be created later; its shapes fail until then.
                log.warning("%s (pgsift.toml [policies])", exc)
        return catalog
