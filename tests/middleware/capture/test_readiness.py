"""Readiness checks, `--setup`, refusing to start, and `pgsift doctor`, on a real Postgres."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pgsift.middleware.capture import readiness
from pgsift.middleware.capture.doctor import Finding, render
from pgsift.middleware.capture.readiness import CaptureTarget, Step
from pgsift.middleware.commands import capture as capture_command
from pgsift.middleware.commands import doctor as doctor_command
from pgsift.middleware.errors import CaptureError
from tests.middleware.capture.processes import run_cli

SCHEMA = """
CREATE TABLE issues (id bigint PRIMARY KEY, title text);
CREATE TABLE "Odd Name" (a int, b text);
CREATE TABLE untracked (id int PRIMARY KEY);
"""


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(SCHEMA)
        yield connection


def target(*tables: str, all_tables: bool = False) -> CaptureTarget:
    return CaptureTarget(slot="s1", publication="p1", tables=tables, all_tables=all_tables)


def cli(module: object, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def test_a_fresh_database_lists_exactly_what_is_missing(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    problems = readiness.check(conn, target("issues", '"Odd Name"'))
    assert [p.what for p in problems] == [
        "publication p1 does not exist",
        "replication slot s1 does not exist",
        "table public.issues has REPLICA IDENTITY DEFAULT, capture needs FULL "
        "(old rows of updates and deletes)",
        "table public.Odd Name has REPLICA IDENTITY DEFAULT, capture needs FULL "
        "(old rows of updates and deletes)",
    ]
    assert [p.fix for p in problems] == [
        'CREATE PUBLICATION "p1" FOR TABLE "public"."issues", "public"."Odd Name";',
        "SELECT pg_create_logical_replication_slot('s1', 'pgoutput');",
        'ALTER TABLE "public"."issues" REPLICA IDENTITY FULL;',
        'ALTER TABLE "public"."Odd Name" REPLICA IDENTITY FULL;',
    ]
    with pytest.raises(CaptureError, match="run with --setup") as refused:
        capture_command._prepare(conn, target("issues"), setup=False)
    assert "fix: SELECT pg_create_logical_replication_slot('s1', 'pgoutput');" in str(
        refused.value
    )


def test_setup_applies_the_fixes_once(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    applied = readiness.setup(conn, target("issues"))
    assert len(applied) == 3
    assert readiness.check(conn, target("issues")) == []
    assert readiness.setup(conn, target("issues")) == []
    # A table added to the tracked list later is added to the publication.
    problems = readiness.check(conn, target("issues", '"Odd Name"'))
    assert [p.fix for p in problems] == [
        'ALTER PUBLICATION "p1" ADD TABLE "public"."Odd Name";',
        'ALTER TABLE "public"."Odd Name" REPLICA IDENTITY FULL;',
    ]
    readiness.setup(conn, target("issues", '"Odd Name"'))
    assert readiness.check(conn, target("issues", '"Odd Name"')) == []


def test_all_tables_needs_a_for_all_tables_publication(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    readiness.setup(conn, target("issues"))
    problems = readiness.check(conn, target(all_tables=True))
    assert problems[0].what == "publication p1 is not FOR ALL TABLES (--all)"
    readiness.setup(conn, target(all_tables=True))
    assert readiness.check(conn, target(all_tables=True)) == []
    identities = conn.execute(
        "SELECT relname FROM pg_class WHERE relreplident = 'f' AND relkind = 'r'"
        " AND relnamespace = 'public'::regnamespace ORDER BY 1"
    ).fetchall()
    assert identities == [("Odd Name",), ("issues",), ("untracked",)]


def test_unknown_tables_are_named(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with pytest.raises(CaptureError, match=r"table\(s\) not found: nope, public\.missing"):
        readiness.check(conn, target("issues", "nope", "public.missing"))


def test_doctor_prints_the_fixes_and_fails_until_ready(
    database_url: str,
    conn: psycopg.Connection[tuple[object, ...]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["doctor", "--database-url", database_url, "--tables", "issues",
            "--slot", "s1", "--publication", "p1"]
    assert cli(doctor_command, *argv) == 1
    out = capsys.readouterr().out
    assert "  ok    wal_level = logical" in out
    assert "  FAIL  publication p1 does not exist" in out
    owner = conn.info.user
    fixes = out[out.index("to fix, in this order"):].splitlines()[1:4]
    # Replica identity and publication need the table's owner; the slot comes last.
    assert [line.split(": ", 1)[1] for line in fixes] == [
        'ALTER TABLE "public"."issues" REPLICA IDENTITY FULL;',
        'CREATE PUBLICATION "p1" FOR TABLE "public"."issues";',
        "SELECT pg_create_logical_replication_slot('s1', 'pgoutput');",
    ]
    assert fixes[0].startswith(f"  1. as the owner of public.issues ({owner})")
    assert fixes[2].endswith("or any role with REPLICATION: "
                             "SELECT pg_create_logical_replication_slot('s1', 'pgoutput');")
    assert out.rstrip().endswith("capture cannot run: 3 problem(s) above")

    readiness.setup(conn, target("issues"))
    assert cli(doctor_command, *argv) == 0
    out = capsys.readouterr().out
    assert "replication slot s1: idle (WAL is retained until capture runs), confirmed" in out
    assert "  ok    table public.issues: REPLICA IDENTITY FULL\n" in out
    assert out.rstrip().endswith("capture can run")


def test_doctor_names_missing_privileges(
    database_url: str, conn: psycopg.Connection[tuple[object, ...]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    role = f"r_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        url = psycopg.conninfo.make_conninfo(database_url, user=role)
        assert cli(doctor_command, "doctor", "--database-url", url, "--tables", "issues") == 1
        out = capsys.readouterr().out
        database, owner = conn.info.dbname, conn.info.user
        assert f"  FAIL  role {role} has neither REPLICATION nor SUPERUSER" in out
        assert (f"  WARN  role {role} has no CREATE on database {database}: `capture --setup` "
                "cannot create publication pgsift") in out
        assert (f"  WARN  role {role} may not SELECT public.issues: capture runs, but serve and "
                "worker cannot read it with this role") in out
        fixes = out[out.index("to fix, in this order"):].splitlines()[1:]
        assert fixes == [
            f'  1. as a superuser: ALTER ROLE "{role}" REPLICATION;',
            f"  2. as the owner of database {database} ({owner}) or a superuser: "
            f'GRANT CREATE ON DATABASE "{database}" TO "{role}";  -- or have the publication '
            "created for it",
            f"  3. as the owner of public.issues ({owner}) or a superuser: "
            f'GRANT SELECT ON "public"."issues" TO "{role}";',
            f"  4. as the owner of public.issues ({owner}) or a superuser: "
            'ALTER TABLE "public"."issues" REPLICA IDENTITY FULL;',
            f"  5. as {owner} (the tables' owner, with CREATE on database {database}) or a "
            'superuser: CREATE PUBLICATION "pgsift" FOR TABLE "public"."issues";',
            f"  6. as {role} (the capture role) or any role with REPLICATION: "
            "SELECT pg_create_logical_replication_slot('pgsift', 'pgoutput');",
            "capture cannot run: 4 problem(s) above",
        ]
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def test_server_settings_and_their_restart_come_first() -> None:
    findings = [
        Finding(False, "replication slot s does not exist", "SELECT 1;", who="r",
                step=Step.SLOT),
        Finding(False, "wal_level is replica, capture needs logical",
                "ALTER SYSTEM SET wal_level = logical;"),
        Finding(False, "role r has neither REPLICATION nor SUPERUSER", "ALTER ROLE r;",
                step=Step.ROLE),
        Finding(False, "WAL senders: 10 of 10 in use", "ALTER SYSTEM SET max_wal_senders = 20;"),
    ]
    text, can_run = render(findings, header="doctor")
    assert not can_run
    assert text.splitlines()[6:] == [
        "  1. as a superuser: ALTER SYSTEM SET wal_level = logical;",
        "  2. as a superuser: ALTER SYSTEM SET max_wal_senders = 20;",
        "  3. restart PostgreSQL (server settings apply at start)",
        "  4. as a superuser: ALTER ROLE r;",
        "  5. as r: SELECT 1;",
        "capture cannot run: 4 problem(s) above",
    ]


def test_setup_without_the_privilege_says_who_must_run_what(
    database_url: str, conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    role = f"r_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN REPLICATION")
    try:
        conn.execute("ALTER TABLE issues REPLICA IDENTITY FULL")
        url = psycopg.conninfo.make_conninfo(database_url, user=role)
        result = run_cli("capture", "--database-url", url, "--redis-url", "redis://127.0.0.1:1/0",
                         "--tables", "issues", "--setup")
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
        assert result.stderr.startswith(
            f'pgsift: error: capture --setup may not run `CREATE PUBLICATION "pgsift" FOR TABLE '
            f'"public"."issues";` as role {role} (permission denied for database '
            f"{conn.info.dbname}): have {conn.info.user} (the tables' owner, with CREATE on "
            f"database {conn.info.dbname}) or a superuser run it"
        ), result.stderr
    finally:
        conn.execute(f"DROP ROLE {role}")


def test_doctor_cannot_connect(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2"
    assert cli(doctor_command, "doctor", "--database-url", url, "--all") == 1
    assert "FAIL  cannot connect" in capsys.readouterr().out
