"""An app's mutators for the tests: notes and counters, and mutators that misbehave."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from pgsift.middleware.mutations import Refused

SCHEMA = """
CREATE TABLE notes (id bigserial PRIMARY KEY, owner text NOT NULL, body text NOT NULL);
CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO counters VALUES ('hits', 0);
"""
MUTATORS = {
    "add_note": "tests.middleware.mutations.app:add_note",
    "bump": "tests.middleware.mutations.app:bump",
    "refuse": "tests.middleware.mutations.app:refuse",
    "explode": "tests.middleware.mutations.app:explode",
    "stall": "tests.middleware.mutations.app:stall",
    "commit": "tests.middleware.mutations.app:commit",
    "admin_only": {
        "function": "tests.middleware.mutations.app:add_note",
        "claims": {"role": "admin"},
    },
}
Conn = psycopg.Connection[Any]
# `stall` waits here (with its transaction open) until a test lets it go on.
release = threading.Event()
stalled = threading.Event()


def add_note(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    conn.execute("INSERT INTO notes (owner, body) VALUES (%s, %s)", [claims["sub"], args["body"]])


def bump(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'hits'")


def refuse(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    add_note(conn, {"body": "written before refusing"}, claims)
    raise Refused(str(args.get("why", "no")))


def explode(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    add_note(conn, {"body": "written before failing"}, claims)
    raise RuntimeError("internal detail: password=hunter2")


def stall(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    add_note(conn, {"body": "stalled"}, claims)
    stalled.set()
    if not release.wait(60):
        raise RuntimeError("never released")


def commit(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    add_note(conn, {"body": "committed by the mutator"}, claims)
    conn.commit()


def wrong_arity(conn: Conn) -> None:
    """Not a mutator: takes one argument."""


async def coroutine(conn: Conn, args: dict[str, Any], claims: dict[str, Any]) -> None:
    """Not a mutator: mutators are plain functions."""


NOT_CALLABLE = 42
