"""Is a database ready for capture? What exactly is missing, and the SQL that fixes it.

`check(conn, target)` lists the problems that stop capture (each with the
statement that fixes it, who may run it, and its place in the order that works:
`Step`); `setup(conn, target)` applies the fixes that are safe to apply
automatically (publication, slot, REPLICA IDENTITY FULL, and the mutation ledger
`pgsift.clients` when the target has `ledger`: mutators are configured). Things
only an administrator can change (wal_level, role attributes) stay problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import psycopg
from psycopg import sql

from pgsift.middleware.errors import CaptureError
from pgsift.middleware.mutations import ledger as mutation_ledger

PLUGIN = "pgoutput"
Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class CaptureTarget:
    """What capture tracks: `tables` (names as given) or every table (`all_tables`);
    with `ledger`, the mutation ledger `pgsift.clients` too (created by `setup`)."""

    slot: str
    publication: str
    tables: tuple[str, ...] = ()
    all_tables: bool = False
    ledger: bool = False

    def __post_init__(self) -> None:
        if not self.all_tables and not self.tables:
            raise CaptureError("name the tables to capture (--tables a,b) or pass --all")


class Step(IntEnum):
    """Where a fix goes in the order that works when pasted: the server settings (and the
    restart they need) before anything else, the slot last (it needs wal_level = logical)."""

    SERVER = 0  # ALTER SYSTEM ...; then restart PostgreSQL
    ROLE = 1
    GRANT = 2
    TABLE = 3
    PUBLICATION = 4
    SLOT = 5


SUPERUSER = "a superuser"


@dataclass(frozen=True)
class Problem:
    """One thing that stops capture; `fix` is the SQL that resolves it, `who` may run it."""

    what: str
    fix: str
    automatic: bool  # `--setup` applies `fix` itself
    who: str = SUPERUSER
    step: Step = Step.SERVER


def tracked_tables(conn: Conn, target: CaptureTarget) -> list[str]:
    """Schema-qualified names of the tracked tables; unknown names raise CaptureError."""
    if target.all_tables:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
        ).fetchall()
        return [str(name) for (name,) in rows]
    names: list[str] = []
    missing: list[str] = []
    for table in target.tables:
        row = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            [table],
        ).fetchone()
        if row is None:
            missing.append(table)
        else:
            names.append(str(row[0]))
    if missing:
        raise CaptureError(f"table(s) not found: {', '.join(missing)}")
    # Named even before `setup` creates it, so that the publication's fix covers it.
    if target.ledger and mutation_ledger.QUALIFIED not in names:
        names.append(mutation_ledger.QUALIFIED)
    return names


def qualified(conn: Conn, table: str) -> str:
    schema, _, name = table.partition(".")
    return sql.Identifier(schema, name).as_string(conn)


def publication_sql(
    conn: Conn, target: CaptureTarget, tables: list[str]
) -> str:
    name = sql.Identifier(target.publication).as_string(conn)
    if target.all_tables:
        return f"CREATE PUBLICATION {name} FOR ALL TABLES;"
    listed = ", ".join(qualified(conn, t) for t in tables)
    return f"CREATE PUBLICATION {name} FOR TABLE {listed};"


def check(conn: Conn, target: CaptureTarget) -> list[Problem]:
    """Everything missing before capture can run on this database."""
    problems: list[Problem] = []
    wal_level = conn.execute("SHOW wal_level").fetchone()
    if wal_level is None or wal_level[0] != "logical":
        problems.append(Problem(
            f"wal_level is {wal_level[0] if wal_level else '?'}, capture needs logical",
            "ALTER SYSTEM SET wal_level = logical;",
            automatic=False,
        ))
    role = conn.execute(
        "SELECT rolname, rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if role is not None and not (role[1] or role[2]):
        problems.append(Problem(
            f"role {role[0]} has neither REPLICATION nor SUPERUSER",
            f"ALTER ROLE {sql.Identifier(str(role[0])).as_string(conn)} REPLICATION;",
            automatic=False,
            step=Step.ROLE,
        ))
    tables = tracked_tables(conn, target)
    problems += _ledger_problems(conn, target)
    problems += _publication_problems(conn, target, tables)
    problems += _slot_problems(conn, target)
    problems += _identity_problems(conn, tables)
    return problems


def _publication_problems(
    conn: Conn, target: CaptureTarget, tables: list[str]
) -> list[Problem]:
    row = conn.execute(
        "SELECT puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate,"
        " pg_get_userbyid(pubowner) FROM pg_publication WHERE pubname = %s",
        [target.publication],
    ).fetchone()
    name = sql.Identifier(target.publication).as_string(conn)
    if row is None:
        return [Problem(
            f"publication {target.publication} does not exist",
            publication_sql(conn, target, tables),
            automatic=True,
            who=SUPERUSER if target.all_tables else _tables_owner(conn, tables, create=True),
            step=Step.PUBLICATION,
        )]
    all_tables, all_ops = bool(row[0]), bool(row[1])
    owner = f"the owner of publication {target.publication} ({row[2]}) or a superuser"
    problems: list[Problem] = []
    if not all_ops:
        problems.append(Problem(
            f"publication {target.publication} does not publish every operation",
            f"ALTER PUBLICATION {name} SET (publish = 'insert, update, delete, truncate');",
            automatic=True, who=owner, step=Step.PUBLICATION,
        ))
    if target.all_tables and not all_tables:
        problems.append(Problem(
            f"publication {target.publication} is not FOR ALL TABLES (--all)",
            f"DROP PUBLICATION {name}; {publication_sql(conn, target, tables)}",
            automatic=True, who=SUPERUSER, step=Step.PUBLICATION,
        ))
    elif not all_tables:
        published = {
            str(r[0]) for r in conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables"
                " WHERE pubname = %s",
                [target.publication],
            )
        }
        missing = [t for t in tables if t not in published]
        if missing:
            listed = ", ".join(qualified(conn, t) for t in missing)
            problems.append(Problem(
                f"publication {target.publication} lacks table(s) {', '.join(missing)}",
                f"ALTER PUBLICATION {name} ADD TABLE {listed};",
                automatic=True, who=f"{owner}, owning the table(s)", step=Step.PUBLICATION,
            ))
    return problems


def _slot_problems(
    conn: Conn, target: CaptureTarget
) -> list[Problem]:
    row = conn.execute(
        "SELECT plugin, database, slot_type FROM pg_replication_slots WHERE slot_name = %s",
        [target.slot],
    ).fetchone()
    create = f"SELECT pg_create_logical_replication_slot('{target.slot}', '{PLUGIN}');"
    replication = f"{conn.info.user} (the capture role) or any role with REPLICATION"
    if row is None:
        return [Problem(f"replication slot {target.slot} does not exist", create,
                        automatic=True, who=replication, step=Step.SLOT)]
    plugin, database, slot_type = row
    current = conn.info.dbname
    if slot_type != "logical" or plugin != PLUGIN or database != current:
        return [Problem(
            f"replication slot {target.slot} is a {slot_type} slot of plugin {plugin} on "
            f"database {database}; capture needs a {PLUGIN} slot on {current}",
            f"SELECT pg_drop_replication_slot('{target.slot}');  -- or choose another --slot",
            automatic=False, who=replication, step=Step.SLOT,
        )]
    return []


def _identity_problems(
    conn: Conn, tables: list[str]
) -> list[Problem]:
    problems: list[Problem] = []
    for table in tables:
        row = conn.execute(
            "SELECT relreplident, pg_get_userbyid(relowner) FROM pg_class"
            " WHERE oid = to_regclass(%s)",
            [qualified(conn, table)],
        ).fetchone()
        if row is not None and row[0] != "f":
            problems.append(Problem(
                f"table {table} has REPLICA IDENTITY "
                f"{ {'d': 'DEFAULT', 'n': 'NOTHING', 'i': 'USING INDEX'}.get(str(row[0]), row[0]) }"
                ", capture needs FULL (old rows of updates and deletes)",
                f"ALTER TABLE {qualified(conn, table)} REPLICA IDENTITY FULL;",
                automatic=True, who=f"the owner of {table} ({row[1]}) or a superuser",
                step=Step.TABLE,
            ))
    return problems


def _ledger_problems(conn: Conn, target: CaptureTarget) -> list[Problem]:
    if not target.ledger:
        return []
    missing = mutation_ledger.missing_columns(conn)
    if missing == ():
        return []
    database = conn.info.dbname
    what = (
        f"table {mutation_ledger.QUALIFIED} does not exist" if missing is None
        else f"table {mutation_ledger.QUALIFIED} lacks column(s) {', '.join(missing)} "
        "(made by an older pgsift)"
    )
    return [Problem(
        f"{what} (the mutation ledger: [mutators] are configured)",
        mutation_ledger.CREATE_SQL,
        automatic=True,
        who=f"a role with CREATE on database {database} (then the gateway's role needs "
        f"SELECT, INSERT, UPDATE on {mutation_ledger.QUALIFIED}) or a superuser",
        step=Step.TABLE,
    )]


def _tables_owner(conn: Conn, tables: list[str], *, create: bool) -> str:
    """Who may run a statement needing ownership of `tables` (and CREATE on the database)."""
    owners = sorted({
        str(row[0]) for table in tables
        for row in conn.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)",
            [qualified(conn, table)],
        )
    })
    if len(owners) != 1:
        return SUPERUSER
    needs = f", with CREATE on database {conn.info.dbname}" if create else ""
    return f"{owners[0]} (the tables' owner{needs}) or a superuser"


def setup(conn: Conn, target: CaptureTarget) -> list[str]:
    """Apply every automatic fix (autocommit connection); returns the statements run.

    Raises CaptureError listing what still needs an administrator, or naming the
    statement this role may not run and who may.
    """
    applied: list[str] = []
    for problem in sorted(check(conn, target), key=lambda p: p.step):
        if problem.automatic:
            try:
                conn.execute(problem.fix.encode())
            except psycopg.errors.InsufficientPrivilege as exc:
                raise CaptureError(
                    f"capture --setup may not run `{problem.fix}` as role {conn.info.user} "
                    f"({str(exc).strip()}): have {problem.who} run it (`pgsift doctor` lists "
                    "every fix in order), then start capture again"
                ) from exc
            applied.append(problem.fix)
    remaining = check(conn, target)
    if remaining:
        raise CaptureError(describe(remaining, header="capture cannot run after --setup:"))
    return applied


def describe(problems: list[Problem], *, header: str) -> str:
    """A message listing each problem and its fix."""
    lines = [header]
    for problem in sorted(problems, key=lambda p: p.step):
        lines.append(f"  - {problem.what}")
        restart = "; then restart PostgreSQL" if problem.step is Step.SERVER else ""
        lines.append(f"      fix: {problem.fix}  -- as {problem.who}{restart}")
    return "\n".join(lines)
