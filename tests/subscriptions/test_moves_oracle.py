"""Moves against Postgres: a copy kept by routing and moves equals SELECT after every transaction.

Random inner tables (memberships with NULLs and duplicates, projects read through
a nested select) and outer rows; shapes with `IN (SELECT ...)` under AND, OR,
NOT, IS, row comparisons, EXISTS, a constant compared with a set, one set at two
places, and nesting; jsonb columns hold JSON null beside SQL NULL, in inner
sets' conditions and in the rows that move. Each example loads the tables,
materializes every inner set from Postgres, takes each shape's rows as a
client's copy (checking every verdict of `matches` against the copy), then runs
random transactions that change inner and outer tables together. After each
commit, as a gateway would: the registry applies the changes (nested sets judge
the rows of their tables' mirrors again; every held set must then equal its select), the
index routes the outer changes (old rows with the sets before the transaction),
and each shape's moves are read from Postgres and applied. Every copy must then
equal what Postgres returns for the shape.
PGSIFT_ORACLE_EXAMPLES raises the number of examples.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.pgtypes import configure
from pgsift.subscriptions import Catalog, Shape
from pgsift.subscriptions.change import Change
from pgsift.subscriptions.events import Event
from pgsift.subscriptions.inner import walk_sets
from pgsift.subscriptions.jsonvalues import JSON_NULL
from pgsift.subscriptions.moves import IN_SHAPE, Move
from pgsift.subscriptions.registry import SetRegistry
from pgsift.subscriptions.routing import RoutingIndex
from pgsift.subscriptions.sets import BeforeView
from tests.subscriptions.databases import jsonb_param, scratch_database

EXAMPLES = int(os.environ.get("PGSIFT_ORACLE_EXAMPLES", "200")) // 4
DDL = """
CREATE TABLE issues (
    id int8 PRIMARY KEY, team_id int4, status text, prio int4, owner text, data jsonb
);
CREATE TABLE members (id int8 PRIMARY KEY, team_id int4, user_id text, role text, meta jsonb);
CREATE TABLE projects (id int8 PRIMARY KEY, team_id int4, lead text, archived bool);
"""
TEAMS = "SELECT team_id FROM members WHERE user_id = $1"
SHAPES = [
    f"SELECT id, status FROM issues WHERE team_id IN ({TEAMS})",
    f"SELECT id, status FROM issues WHERE team_id IN ({TEAMS}) AND status <> 'done'",
    f"SELECT id, status, prio FROM issues WHERE team_id IN ({TEAMS}) OR prio = 1",
    f"SELECT id FROM issues WHERE team_id NOT IN ({TEAMS}) AND prio > 0",
    f"SELECT id FROM issues WHERE (team_id IN ({TEAMS})) IS NOT TRUE",
    f"SELECT id FROM issues WHERE NOT (team_id IN ({TEAMS}) AND status = 'open') OR prio IS NULL",
    "SELECT id, owner FROM issues WHERE (team_id, owner) IN "
    "(SELECT team_id, user_id FROM members WHERE role = $1)",
    "SELECT id FROM issues WHERE (team_id, owner) NOT IN "
    "(SELECT team_id, user_id FROM members WHERE role = $1)",
    "SELECT id FROM issues WHERE EXISTS (SELECT 1 FROM members WHERE role = $1) AND prio = 2",
    "SELECT id FROM issues WHERE $1 IN (SELECT role FROM members WHERE user_id = 'a') "
    "OR team_id = 1",
    f"SELECT id FROM issues WHERE team_id IN ({TEAMS}) OR prio IN ({TEAMS})",
    "SELECT id, prio FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE "
    "archived IS NOT TRUE AND lead IN (SELECT user_id FROM members WHERE team_id = 1 "
    "OR role = $1))",
    "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE "
    "lead NOT IN (SELECT user_id FROM members WHERE role = $1))",
    "SELECT id FROM issues WHERE team_id NOT IN (SELECT team_id FROM projects WHERE "
    "archived OR lead IN (SELECT user_id FROM members WHERE role = $1))",
    "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE "
    "archived IS NOT TRUE AND EXISTS (SELECT 1 FROM members WHERE role = $1))",
    # A constant in the nested IN's argument: its mirror's region is found by a scan.
    "SELECT id FROM issues WHERE team_id IN (SELECT team_id FROM projects WHERE "
    "(lead, $1) IN (SELECT user_id, role FROM members))",
    "SELECT id, data FROM issues WHERE team_id IN (SELECT team_id FROM members WHERE "
    "meta IS NOT NULL OR role = $1) AND data IS NOT NULL",
    "SELECT id FROM issues WHERE data IS NULL OR owner NOT IN "
    "(SELECT user_id FROM members WHERE meta IS NULL AND role = $1)",
]
PARAMS = {"$1": ["a", "b", "c", "dev", "admin"]}
TEAM = [None, 1, 2, 3, 4]
USERS = [None, "a", "b", "c"]
ROLES = [None, "dev", "admin", "ops"]
# JSON null (JSON_NULL) is a value, not SQL NULL (None): `IS NULL` tells them apart.
JSONS = [None, JSON_NULL, {}, "null", [None]]
JSONB_COLUMNS = ("data", "meta")


def pick(rng: random.Random, options: list[Any]) -> Any:
    return options[rng.randrange(len(options))]


def member(rng: random.Random) -> dict[str, Any]:
    return {
        "team_id": pick(rng, TEAM),
        "user_id": pick(rng, USERS),
        "role": pick(rng, ROLES),
        "meta": pick(rng, JSONS),
    }


def issue(rng: random.Random) -> dict[str, Any]:
    return {
        "team_id": pick(rng, TEAM),
        "status": pick(rng, [None, "open", "done"]),
        "prio": pick(rng, [None, 0, 1, 2]),
        "owner": pick(rng, USERS),
        "data": pick(rng, JSONS),
    }


def project(rng: random.Random) -> dict[str, Any]:
    return {
        "team_id": pick(rng, TEAM),
        "lead": pick(rng, USERS),
        "archived": pick(rng, [None, True, False]),
    }


MAKERS = {"members": member, "issues": issue, "projects": project}


class Database:
    def __init__(self, conn: psycopg.Connection[dict[str, Any]], catalog: Catalog) -> None:
        self.conn = conn
        self.catalog = catalog
        self.next_id = 1000

    def rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self.conn.execute(sql, list(params)).fetchall()

    def load(self, rng: random.Random) -> None:
        self.conn.execute("TRUNCATE issues, members, projects")
        for table, count in (("members", 8), ("issues", 12), ("projects", 5)):
            for i in range(rng.randrange(count)):
                self.insert(table, {"id": i, **MAKERS[table](rng)})

    def insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        names = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING *"
        return self.rows(sql, [_param(column, value) for column, value in row.items()])[0]

    def change(self, rng: random.Random) -> Change | None:
        """One random change, made in the open transaction."""
        table = pick(rng, ["members", "members", "issues", "projects"])
        existing = self.rows(f"SELECT * FROM {table} ORDER BY id")
        op = pick(rng, ["insert", "update", "update", "delete"]) if existing else "insert"
        if op == "insert":
            self.next_id += 1
            new = self.insert(table, {"id": self.next_id, **MAKERS[table](rng)})
            return Change(f"public.{table}", "insert", {"id": new["id"]}, new, None)
        old = pick(rng, existing)
        if op == "delete":
            self.conn.execute(f"DELETE FROM {table} WHERE id = %s", [old["id"]])
            return Change(f"public.{table}", "delete", {"id": old["id"]}, None, old)
        fields = MAKERS[table](rng)
        column = pick(rng, list(fields))
        sql = f"UPDATE {table} SET {column} = %s WHERE id = %s RETURNING *"
        new = self.rows(sql, [_param(column, fields[column]), old["id"]])[0]
        return Change(f"public.{table}", "update", {"id": old["id"]}, new, old)


def _param(column: str, value: Any) -> Any:
    return jsonb_param(value) if column in JSONB_COLUMNS else value


def apply_events(copy: dict[Any, dict[str, Any]], events: list[Event]) -> None:
    for event in events:
        assert event.key is not None
        key = tuple(event.key.values())
        if event.op == "delete":
            copy.pop(key, None)
        else:
            assert event.row is not None
            copy[key] = event.row


def snapshot(db: Database, shape: Shape) -> dict[Any, dict[str, Any]]:
    sql, params = shape.to_sql()
    return {(row["id"],): row for row in db.rows(sql, params)}


def apply_move(db: Database, shape: Shape, move: Move, copy: dict[Any, dict[str, Any]]) -> None:
    if move.refetch:
        copy.clear()
        copy.update(snapshot(db, shape))
        return
    rows = db.rows(move.sql, move.params)
    # `in_region` (Python) agrees with the region the query read (SQL).
    region = {r["id"] for r in db.rows("SELECT * FROM issues") if move.in_region(r)}
    moved = {r["id"] for r in rows}
    assert moved <= region if move.inserts_only else moved == region, (move, region)
    for row in rows:
        key = (row["id"],)
        if move.inserts_only or row.pop(IN_SHAPE):
            copy[key] = {c: row[c] for c in shape.columns}
        else:
            copy.pop(key, None)


def assert_sets_exact(db: Database, registry: SetRegistry, shapes: list[Shape]) -> None:
    """Every held set, nested ones included (their candidates judged again in memory when
    a set they read changed), holds the values of its select as Postgres answers it."""
    for shape in shapes:
        for inner in walk_sets(shape.inner_sets):
            sql, params = inner.to_sql()
            want = {inner.element(row) for row in db.rows(sql, params)}
            state = registry.state(inner.key)
            held = {m if isinstance(m, tuple) else (m,) for m in state.members}
            assert held | set(state.partial) == want, inner


@pytest.fixture(scope="module")
def db(postgres_server: Any) -> Iterator[Database]:
    with scratch_database(postgres_server, "pgsift_moves_oracle") as url:
        with psycopg.connect(url, autocommit=True) as plain:
            plain.execute(DDL)
            catalog = load_catalog(plain)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            configure(conn)  # JSON null read as JSON_NULL, as the gateway reads it
            yield Database(conn, catalog)


@settings(
    max_examples=max(EXAMPLES, 10),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_routing_and_moves_keep_every_copy_equal_to_select(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    db.load(rng)
    registry = SetRegistry()
    index: RoutingIndex[int] = RoutingIndex(registry)
    shapes = [Shape.parse(sql, [pick(rng, PARAMS["$1"])], catalog=db.catalog) for sql in SHAPES]
    copies: list[dict[Any, dict[str, Any]]] = []
    for number, shape in enumerate(shapes):
        needed = registry.acquire(shape.inner_sets)
        for mirror in registry.needed_mirrors(needed):
            assert registry.load_mirror(mirror, db.rows(mirror.sql()))
        for inner in needed:
            sql, params = inner.to_sql()
            assert registry.load(inner, db.rows(sql, params))
        copies.append(snapshot(db, shape))
        # Every verdict, with the sets as Postgres computed them, is Postgres's own.
        for row in db.rows("SELECT * FROM issues"):
            assert shape.matches(row, registry) == ((row["id"],) in copies[-1]), (shape, row)
        index.add(shape, number)
    for _ in range(4):
        changes: list[Change] = []
        with db.conn.transaction():
            for _ in range(rng.randrange(1, 5)):
                change = db.change(rng)
                if change is not None:
                    changes.append(change)
        deltas = registry.apply(changes)
        assert_sets_exact(db, registry, shapes)
        before = BeforeView(registry, deltas)
        for delta in deltas:
            index.widen(delta)
        seen: set[Any] = set()
        for change in changes:
            if change.table != "public.issues":
                continue
            key = change.key["id"] if change.key else None
            first = key not in seen
            seen.add(key)
            routed: dict[int, list[Event]] = {}
            for listener, event in index.route(change, before=before if first else None):
                routed.setdefault(listener, []).append(event)
            for listener, events in routed.items():
                apply_events(copies[listener], events)
        for delta in deltas:
            index.narrow(delta)
        for delta in deltas:
            for move, listeners in index.moves(delta):
                for listener in listeners:
                    apply_move(db, shapes[listener], move, copies[listener])
        for shape, copy in zip(shapes, copies, strict=True):
            expected = snapshot(db, shape)
            assert copy == expected, f"seed={seed} {shape}\ncopy={copy}\nwant={expected}"
