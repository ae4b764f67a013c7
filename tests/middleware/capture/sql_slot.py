"""Real pgoutput bytes without a replication connection: the slot SQL functions."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg


class SqlSlot:
    """A pgoutput slot read with `pg_logical_slot_get_binary_changes` (consuming).

    Decoding over SQL reads only flushed WAL, and the embedded server runs with
    synchronous_commit=off: the connection turns it on so that every commit it
    makes is visible to the next `read()`. Slot names are cluster-wide, hence
    a random one.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], *, publication: str = "p", proto_version: int = 1
    ) -> None:
        self.conn = conn
        self.proto_version = proto_version
        self.name = f"s_{uuid.uuid4().hex[:12]}"
        self.publication = publication
        conn.execute("SET synchronous_commit = on")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [self.name])

    def read(self) -> list[bytes]:
        """Every message since the last read, in order."""
        rows = self.conn.execute(
            "SELECT data FROM pg_logical_slot_get_binary_changes("
            "%s, NULL, NULL, 'proto_version', %s, 'publication_names', %s, 'messages', 'true')",
            [self.name, str(self.proto_version), self.publication],
        ).fetchall()
        return [bytes(row[0]) for row in rows]
