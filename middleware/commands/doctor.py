"""`pgsift doctor`: can capture run on this database? What to fix, as exact SQL."""

from __future__ import annotations

import argparse

import psycopg

from pgsift.middleware.capture.doctor import Finding, examine, render
from pgsift.middleware.capture.readiness import CaptureTarget
from pgsift.middleware.commands.capture import add_connection_arguments, settings_from
from pgsift.middleware.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check that capture can run on a database; print the SQL to fix it",
        description="Give it the flags you give `pgsift capture`; without --tables it checks "
        "as for --all. Exits 1 when capture could not run.",
    )
    add_connection_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.database_url:
        raise ConfigError("doctor needs --database-url (or PGSIFT_DATABASE_URL)")
    # Without a table choice doctor still checks the server; tables: every table.
    target = CaptureTarget(
        slot=settings.capture_slot,
        publication=settings.capture_publication,
        tables=settings.capture_tables,
        all_tables=settings.capture_all or not settings.capture_tables,
        ledger=bool(settings.mutators),
    )
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            where = f"{conn.info.dbname} on {conn.info.host}:{conn.info.port}"
            header = f"pgsift doctor: database {where}"
            findings = examine(conn, target)
    except psycopg.OperationalError as exc:
        header = "pgsift doctor"
        findings = [Finding(False, f"cannot connect: {str(exc).strip()}", "check --database-url")]
    text, can_run = render(findings, header=header)
    print(text)
    return 0 if can_run else 1
