"""Catalog lookups capture needs beside the replication stream (psycopg 3, TimeZone UTC).

pgoutput names column types by OID only and, with REPLICA IDENTITY FULL, flags
every column as part of the identity; the type names (for typed values: enums,
arrays, domains) and the real primary key come from the catalog. The same side
connection writes capture's heartbeat markers into the WAL (`emit_message`).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

log = logging.getLogger(__name__)

TYPE_SQL = """
SELECT t.typtype, t.typname, t.typbasetype, e.oid, e.typname
FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE t.oid = %s
"""
PRIMARY_KEY_SQL = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
ORDER BY array_position(i.indkey, a.attnum)
"""


class CatalogLookup:
    """Type names by OID and primary keys by table, cached, over one side connection."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._types: dict[int, str] = {}

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._url, autocommit=True, options="-c TimeZone=UTC",
                application_name="pgsift capture (catalog)",
            )
        return self._conn

    def type_name(self, oid: int) -> str:
        """The pgsift type name of `oid`: `int4`, `issue_status`, `int4[]`; domains by base."""
        name = self._types.get(oid)
        if name is None:
            name = self._resolve(oid, depth=0)
            self._types[oid] = name
        return name

    def _resolve(self, oid: int, *, depth: int) -> str:
        row = self._connection().execute(TYPE_SQL, [oid]).fetchone()
        if row is None:
            log.warning("type OID %s not in pg_type; values stay text", oid)
            return "text"
        typtype, typname, basetype, element_oid, _element_name = row
        if typtype == "d" and depth < 10:
            return self._resolve(int(basetype), depth=depth + 1)
        if element_oid is not None:
            return f"{self.type_name(int(element_oid))}[]"
        return str(typname)

    def forget_type(self, oid: int) -> None:
        self._types.pop(oid, None)

    def primary_key(self, table: str) -> tuple[str, ...]:
        """Primary key columns of schema-qualified `table` in key order; () when it has none."""
        schema, _, name = table.partition(".")
        regclass = psycopg.sql.Identifier(schema, name).as_string(self._connection())
        rows = self._connection().execute(PRIMARY_KEY_SQL, [regclass]).fetchall()
        return tuple(str(r[0]) for r in rows)

    def terminate_slot_holder(self, slot: str) -> int | None:
        """End the backend streaming from `slot` (a stale capture); its PID, if any."""
        row = self._connection().execute(
            "SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = %s AND active_pid IS NOT NULL",
            [slot],
        ).fetchone()
        return None if row is None else int(row[0])

    def emit_message(self, prefix: str, content: str) -> None:
        """Write a non-transactional logical decoding message into the WAL at once."""
        self._connection().execute(
            "SELECT pg_logical_emit_message(false, %s, %s)", [prefix, content]
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
