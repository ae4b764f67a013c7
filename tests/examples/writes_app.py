"""A mutator for the write tests that the issue tracker does not have: one that fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg


def explode(
    conn: psycopg.Connection[Any], args: Mapping[str, Any], claims: Mapping[str, Any]
) -> None:
    """Writes, then raises (a bug, not a refusal): the write must not stay."""
    conn.execute("UPDATE issues SET title = 'exploded' WHERE id = %s", [int(args["issue_id"])])
    raise RuntimeError("the app's mutator has a bug")
