"""load_catalog against a real database: type names, keys, enums, domains."""

from __future__ import annotations

import psycopg
import pytest

from pgsift.middleware.catalog import CatalogSource, load_catalog, require_replica_identity
from pgsift.subscriptions import Shape
from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.errors import PolicyError
from pgsift.subscriptions.policy import policies_from_config


def test_load_catalog(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE SCHEMA app;
            CREATE TYPE issue_status AS ENUM ('open', 'doing', 'done');
            CREATE TYPE app.mood AS ENUM ('sad', 'ok');
            CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
            CREATE TABLE issues (
                id bigint PRIMARY KEY, team_id positive, title text, status issue_status,
                labels issue_status[], score double precision, weight real, estimate numeric(10, 2),
                code char(4), name varchar(20), archived boolean, due date, at time,
                created_at timestamptz, updated_at timestamp, span interval, owner uuid,
                payload jsonb, doc json, blob bytea, tags text[], small smallint
            );
            CREATE TABLE app.members (team_id int, user_id text, mood app.mood,
                                      PRIMARY KEY (user_id, team_id));
            CREATE TABLE no_key (a int);
            """
        )
        catalog = load_catalog(conn)
    issues = catalog.table("issues")
    assert issues.name == "public.issues"
    assert issues.primary_key == ("id",)
    assert dict(issues.columns) == {
        "id": "int8", "team_id": "int4", "title": "text", "status": "issue_status",
        "labels": "issue_status[]", "score": "float8", "weight": "float4", "estimate": "numeric",
        "code": "bpchar", "name": "varchar", "archived": "bool", "due": "date", "at": "time",
        "created_at": "timestamptz", "updated_at": "timestamp", "span": "interval",
        "owner": "uuid", "payload": "jsonb", "doc": "json", "blob": "bytea", "tags": "text[]",
        "small": "int2",
    }  # fmt: skip
    members = catalog.table("app.members")
    assert members.primary_key == ("user_id", "team_id")
    assert members.columns["mood"] == "app.mood"
    assert catalog.enums == {"issue_status": ("open", "doing", "done"), "app.mood": ("sad", "ok")}
    assert catalog.find("no_key") is None  # no primary key: nothing to sync by

    shape = Shape.parse(
        "SELECT user_id, team_id FROM app.members WHERE mood = 'ok'", catalog=catalog
    )
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO app.members VALUES (1, 'u', 'ok'), (2, 'v', 'sad')")
        sql, params = shape.to_sql()
        assert conn.execute(sql, params).fetchall() == [("u", 1)]


def test_replica_identity_full_is_read_and_required_under_row_policies(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE keyed (id int PRIMARY KEY, team int);
            CREATE TABLE full_rows (id int PRIMARY KEY, team int);
            ALTER TABLE full_rows REPLICA IDENTITY FULL;
            """
        )
        catalog = load_catalog(conn)
    assert not catalog.table("keyed").replica_identity_full
    assert catalog.table("full_rows").replica_identity_full
    assert Catalog.from_dict({"t": {"columns": {"id": "int4"}, "primary_key": ["id"]}}).table(
        "t"
    ).replica_identity_full  # described by hand: assumed FULL

    row_policy = {"row": "team = ANY(auth.teams)"}
    policies = policies_from_config(
        {"public.keyed": row_policy, "public.full_rows": row_policy, "public.open": {}}
    )
    claims = {"teams": [1]}
    keyed = Shape.parse("SELECT id FROM keyed", catalog=catalog, claims=claims, policies=policies)
    with pytest.raises(PolicyError, match=r"ALTER TABLE public\.keyed REPLICA IDENTITY FULL"):
        require_replica_identity(keyed, catalog, policies)
    full = Shape.parse("SELECT id FROM full_rows", catalog=catalog, claims=claims,
                       policies=policies)
    require_replica_identity(full, catalog, policies)
    # Without a row rule every subscriber may see every key: nothing leaks.
    require_replica_identity(keyed, catalog, policies_from_config({"public.keyed": {}}))
    require_replica_identity(keyed, catalog, None)


def test_the_catalog_source_reads_once_refreshes_and_checks_the_policies(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE issues (id bigint PRIMARY KEY, title text)")
    policies = policies_from_config({"public.issues": {"columns": ["id", "nope"]},
                                     "public.later": {}})
    source = CatalogSource(database_url, policies)
    first = source.get()
    warned = sorted(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert warned == [
        "policy for public.issues: unknown column(s) nope (pgsift.toml [policies])",
        "policy for unknown table public.later (pgsift.toml [policies])",
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE later (id bigint PRIMARY KEY)")
    assert source.get() is first and first.find("public.later") is None  # read once
    assert source.refresh().find("public.later") is not None  # a schema change: again
    refreshed = source.get()
    assert source.get(max_age_s=0.0) is not refreshed  # too old: read again


def test_not_null_columns_are_read(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE DOMAIN required_text AS text NOT NULL;
            CREATE DOMAIN maybe_int AS int4 CHECK (VALUE > 0);
            CREATE TABLE t (
                id int8 PRIMARY KEY, a text NOT NULL, b text, c required_text, d maybe_int,
                e int4[] NOT NULL
            );
            """
        )
        catalog = load_catalog(conn)
    table = catalog.table("t")
    assert table.not_null == {"id", "a", "c", "e"}
    assert [c for c in table.columns if table.nullable(c)] == ["b", "d"]
    assert Catalog.from_dict(catalog.to_dict()) == catalog
    described = Catalog.from_dict({"t": {"columns": {"id": "int4", "x": "text"},
                                         "primary_key": ["id"]}}).table("t")
    assert described.not_null == frozenset()  # described by hand: nullable but for the key
    assert not described.nullable("id") and described.nullable("x")
