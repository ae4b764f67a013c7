"""Inner selects read under the inner table's policy, in Postgres too: nothing leaks.

A client whose policy on `projects` shows only its organisation's rows, and not
their `secret`, subscribes to items by a condition on projects. Whatever it
writes, the items that arrive depend only on projects it may read: the inner
select carries the projects policy into the SQL Postgres runs, and a condition
on `secret` is refused. A policy's own inner select (items by grants) reads its
table without a policy. Inside an inner select, a jsonb column holding JSON
null and a jsonb constant `null` are values, not SQL NULL, in the SQL sent to
Postgres and in the set pgsift keeps.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgsift.middleware.catalog import load_catalog
from pgsift.middleware.pgtypes import configure
from pgsift.subscriptions import PolicyError, Shape, policies_from_config
from pgsift.subscriptions.registry import SetRegistry

SCHEMA = """
CREATE TABLE projects (id int8 PRIMARY KEY, org text, secret text, archived bool);
CREATE TABLE items (id int8 PRIMARY KEY, project_id int8, title text);
CREATE TABLE grants (project_id int8, user_id text, PRIMARY KEY (project_id, user_id));
INSERT INTO projects VALUES
    (1, 'acme', 'x', true), (2, 'acme', 'y', false), (3, 'other', 'x', true);
INSERT INTO items VALUES (10, 1, 'a1'), (20, 2, 'a2'), (30, 3, 'o3'), (31, 3, 'o3b');
INSERT INTO grants VALUES (1, 'u1'), (3, 'u1'), (2, 'u2');
"""
CONFIG = {
    "public.projects": {"columns": ["id", "org", "archived"], "row": "org = auth.org"},
    "public.items": {},
}
CLAIMS = {"org": "acme", "sub": "u1"}


def ids(conn: psycopg.Connection[Any], shape: Shape) -> set[int]:
    sql, params = shape.to_sql()
    return {row[0] for row in conn.execute(sql, params).fetchall()}


def test_inner_select_reads_under_the_inner_policy(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        catalog = load_catalog(conn)
        policies = policies_from_config(CONFIG, catalog=catalog)

        def parse(sql: str) -> Shape:
            return Shape.parse(sql, catalog=catalog, policies=policies, claims=CLAIMS)

        archived = parse(
            "SELECT id FROM items WHERE project_id IN (SELECT id FROM projects WHERE archived)"
        )
        # Project 3 is archived too, but of another organisation: its items stay away.
        assert ids(conn, archived) == {10}
        everything = parse("SELECT id FROM items WHERE project_id IN (SELECT id FROM projects)")
        assert ids(conn, everything) == {10, 20}
        # The same answer from the predicate, with the set as Postgres materializes it.
        registry = SetRegistry()
        for inner in registry.acquire(archived.inner_sets):
            sql, params = inner.to_sql()
            columns = inner.fetched
            rows = [dict(zip(columns, r, strict=True)) for r in conn.execute(sql, params)]
            assert registry.load(inner, rows)
        pairs = conn.execute("SELECT id, project_id FROM items").fetchall()
        items = [{"id": i, "project_id": p} for i, p in pairs]
        assert {r["id"] for r in items if archived.matches(r, registry)} == {10}
        # Which items arrive would tell which projects have secret 'x': refused.
        with pytest.raises(PolicyError, match="secret"):
            parse("SELECT id FROM items WHERE project_id IN "
                  "(SELECT id FROM projects WHERE secret = 'x')")  # fmt: skip


def test_policy_subqueries_read_without_a_policy(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        catalog = load_catalog(conn)
        config = {
            **CONFIG,
            "public.items": {
                "row": "project_id IN (SELECT project_id FROM grants WHERE user_id = auth.sub)"
            },
        }
        policies = policies_from_config(config, catalog=catalog)
        # grants has no policy (a client could not read it), but the rule may.
        shape = Shape.parse("SELECT id FROM items", catalog=catalog, policies=policies,
                            claims=CLAIMS)  # fmt: skip
        assert ids(conn, shape) == {10, 30, 31}
        with pytest.raises(PolicyError, match=r"no policy allows reading public\.grants"):
            Shape.parse(
                "SELECT id FROM items WHERE project_id IN (SELECT project_id FROM grants)",
                catalog=catalog, policies=policies, claims=CLAIMS,
            )  # fmt: skip


JSON_SCHEMA = """
CREATE TABLE docs (id int8 PRIMARY KEY, body jsonb);
CREATE TABLE notes (id int8 PRIMARY KEY, doc_id int8);
INSERT INTO docs VALUES (1, 'null'), (2, NULL), (3, '{"a": null}');
INSERT INTO notes VALUES (10, 1), (20, 2), (30, 3);
"""


@pytest.mark.parametrize(
    ("where", "params", "expected"),
    [
        ("body IS NOT NULL", [], {10, 30}),
        ("body IS NULL", [], {20}),
        ("body IS NOT NULL AND $1::jsonb IS NOT NULL", ["null"], {10, 30}),
        ("body IS NOT NULL AND $1::jsonb IS NOT NULL", [None], set()),
        ("'null'::jsonb IS NOT NULL AND body IS NOT NULL", [], {10, 30}),
    ],
)
def test_json_null_inside_an_inner_select_is_a_value(
    database_url: str, where: str, params: list[Any], expected: set[int]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(JSON_SCHEMA)
        configure(conn)  # JSON null read as JSON_NULL, as pgsift reads it
        catalog = load_catalog(conn)
        shape = Shape.parse(
            f"SELECT id FROM notes WHERE doc_id IN (SELECT id FROM docs WHERE {where})",
            params, catalog=catalog,
        )
        assert ids(conn, shape) == expected
        registry = SetRegistry()
        (inner,) = registry.acquire(shape.inner_sets)
        sql, inner_params = inner.to_sql()
        with conn.cursor(row_factory=dict_row) as cur:
            selected = cur.execute(sql, inner_params).fetchall()
            docs = cur.execute("SELECT * FROM docs").fetchall()
        assert registry.load(inner, selected)
        # pgsift's own verdict on each doc is the one Postgres gave.
        assert {d["id"] for d in docs if inner.matches(d)} == {r["id"] for r in selected}
        notes = [{"id": i, "doc_id": d} for i, d in conn.execute("SELECT * FROM notes")]
        assert {n["id"] for n in notes if shape.matches(n, registry)} == expected
