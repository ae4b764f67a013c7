"""The mutation ledger `pgsift.clients`: named by `pgsift doctor`, created by
`capture --setup` (with `[mutators]` configured), captured, required by `serve`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsift.middleware.capture import readiness
from pgsift.middleware.capture.readiness import CaptureTarget, Step
from pgsift.middleware.commands import doctor as doctor_command
from pgsift.middleware.mutations import ledger
from tests.middleware.capture.processes import feed, run_cli, wait_for
from tests.middleware.mutations import app

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(app.SCHEMA)
        yield connection


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pgsift.toml"
    path.write_text(f'[mutators]\nadd_note = "{app.MUTATORS["add_note"]}"\n')
    return path


def target(*tables: str, all_tables: bool = False, ledger: bool = True) -> CaptureTarget:
    return CaptureTarget(
        slot="s1", publication="p1", tables=tables, all_tables=all_tables, ledger=ledger
    )


def test_the_ledger_is_a_problem_only_when_mutators_are_configured(conn: Conn) -> None:
    without = [p.what for p in readiness.check(conn, target("notes", ledger=False))]
    assert not any("pgsift.clients" in what for what in without)
    problems = readiness.check(conn, target("notes"))
    [missing] = [p for p in problems if p.what.startswith("table pgsift.clients")]
    assert missing.fix == ledger.CREATE_SQL
    assert missing.automatic and missing.step is Step.TABLE
    [publication] = [p for p in problems if p.step is Step.PUBLICATION]
    assert publication.fix == (
        'CREATE PUBLICATION "p1" FOR TABLE "public"."notes", "pgsift"."clients";'
    )


@pytest.mark.parametrize("all_tables", [False, True])
def test_setup_creates_and_publishes_the_ledger(conn: Conn, all_tables: bool) -> None:
    tables = () if all_tables else ("notes",)
    readiness.setup(conn, target(*tables, all_tables=all_tables))
    assert readiness.check(conn, target(*tables, all_tables=all_tables)) == []
    assert ledger.exists(conn)
    published = conn.execute(
        "SELECT 1 FROM pg_publication_tables WHERE pubname = 'p1'"
        " AND schemaname = 'pgsift' AND tablename = 'clients'"
    ).fetchone()
    identity = conn.execute(
        "SELECT relreplident FROM pg_class WHERE oid = 'pgsift.clients'::regclass"
    ).fetchone()
    assert published is not None and identity == ("f",)


def test_an_existing_publication_gets_the_ledger_added(conn: Conn) -> None:
    readiness.setup(conn, target("notes", ledger=False))
    problems = readiness.check(conn, target("notes"))
    assert [p.fix for p in problems] == [
        ledger.CREATE_SQL, 'ALTER PUBLICATION "p1" ADD TABLE "pgsift"."clients";'
    ]
    readiness.setup(conn, target("notes"))
    assert readiness.check(conn, target("notes")) == []


def test_doctor_prints_the_ledger_fix_with_mutators_configured(
    database_url: str, conn: Conn, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    doctor_command.register(parser.add_subparsers())
    argv = ["doctor", "--database-url", database_url, "--tables", "notes", "--slot", "s1",
            "--publication", "p1"]
    args = parser.parse_args([*argv, "--config", str(config)])
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "  FAIL  table pgsift.clients does not exist (the mutation ledger" in out
    assert "CREATE TABLE IF NOT EXISTS pgsift.clients" in out
    args = parser.parse_args(argv)
    args.func(args)
    assert "pgsift.clients" not in capsys.readouterr().out


def test_capture_setup_creates_it_and_captures_it(
    database_url: str, redis_url: str, conn: Conn, config: Path
) -> None:
    from tests.middleware.capture.processes import CaptureProcess

    process = CaptureProcess(
        database_url, redis_url, "--tables", "notes", "--setup", "--config", str(config)
    ).start()
    try:
        wait_for(lambda: ledger.exists(conn) and conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE database = current_database() AND active"
        ).fetchone() is not None, "capture to set up the ledger and start")
        conn.execute("INSERT INTO pgsift.clients (client_id, owner) VALUES ('c1', 'alice')")
        database = conn.info.dbname

        def captured() -> bool:
            return any(
                change.table == "pgsift.clients" for entry in feed(redis_url, database)
                for change in entry.changes
            )

        wait_for(captured, "the ledger's change in the feed")
    finally:
        process.cleanup()


def test_serve_refuses_to_start_without_the_ledger(
    database_url: str, redis_url: str, config: Path
) -> None:
    result = run_cli("serve", "--database-url", database_url, "--redis-url", redis_url,
                     "--port", "0", "--config", str(config))
    assert result.returncode == 2
    assert "pgsift.clients is missing" in result.stderr
    assert "capture --setup" in result.stderr
    assert "Traceback" not in result.stderr


# The ledger as an earlier version created it: no `failed` column.
OLDER_LEDGER = (
    "CREATE SCHEMA pgsift; CREATE TABLE pgsift.clients (client_id text PRIMARY KEY,"
    " owner text NOT NULL, last_mutation_id bigint NOT NULL DEFAULT 0,"
    " last_status text NOT NULL DEFAULT 'ok', last_error text,"
    " updated_at timestamptz NOT NULL DEFAULT now());"
    " ALTER TABLE pgsift.clients REPLICA IDENTITY FULL;"
    " INSERT INTO pgsift.clients (client_id, owner, last_mutation_id) VALUES ('c1', 'alice', 7)"
)


def test_a_ledger_of_an_older_version_gains_its_missing_column(
    database_url: str, redis_url: str, conn: Conn, config: Path
) -> None:
    """Doctor names the missing column, `serve` says how to add it, setup adds it and
    keeps the rows (with no failures kept)."""
    conn.execute(OLDER_LEDGER)
    [problem] = [p for p in readiness.check(conn, target("notes")) if p.step is Step.TABLE
                 and "pgsift.clients" in p.what]  # fmt: skip
    assert problem.what.startswith("table pgsift.clients lacks column(s) failed")
    assert problem.fix == ledger.CREATE_SQL
    result = run_cli("serve", "--database-url", database_url, "--redis-url", redis_url,
                     "--port", "0", "--config", str(config))
    assert result.returncode == 2
    assert "pgsift.clients lacks column(s) failed" in result.stderr
    readiness.setup(conn, target("notes"))
    assert readiness.check(conn, target("notes")) == []
    assert conn.execute(
        "SELECT client_id, last_mutation_id, failed FROM pgsift.clients"
    ).fetchall() == [("c1", 7, [])]


def test_the_ledger_keeps_the_last_refusals_only(conn: Conn) -> None:
    conn.execute(ledger.CREATE_SQL)
    with conn.transaction():
        ledger.lock(conn, "c1", "alice")
    ids = range(1, ledger.FAILED_KEPT + 10)  # 37 refusals, and every tenth one ran
    for i in ids:
        if i % 10:
            ledger.advance(conn, "c1", i, "refused", f"no {i}")
        else:
            ledger.advance(conn, "c1", i, "ok", None)
    [(failed,)] = conn.execute("SELECT failed FROM pgsift.clients").fetchall()
    kept = [i for i in ids if i % 10][-ledger.FAILED_KEPT:]
    assert kept[0] == 6  # the five oldest refusals went
    assert failed == [{"id": i, "status": "refused", "message": f"no {i}"} for i in kept]
