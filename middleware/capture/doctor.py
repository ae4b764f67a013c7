"""`pgsift doctor`: every precondition of capture, checked, with the SQL that fixes it.

The blocking checks are exactly `readiness.check`'s (what `pgsift capture`
refuses on); doctor adds capacity (free slots and WAL senders), the privileges
of the role (CREATE on the database for the publication; SELECT on the tracked
tables, which serve and worker need when they use the same role), the slot's
lag and a line per tracked table, so an operator sees the whole picture at once.
The fixes are printed in an order that works when pasted (`readiness.Step`:
server settings and the restart first, the slot last), each with who may run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgsift.middleware.capture import readiness
from pgsift.middleware.capture.readiness import SUPERUSER, CaptureTarget, Conn, Step
from pgsift.middleware.errors import CaptureError


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""
    blocking: bool = True  # capture cannot run while this is not ok
    who: str = SUPERUSER  # may run `fix`
    step: Step = Step.SERVER  # where `fix` goes in the order of fixes


def examine(conn: Conn, target: CaptureTarget) -> list[Finding]:
    """All findings for `target` on the database of `conn`, blocking problems included."""
    findings: list[Finding] = []
    version = conn.execute("SHOW server_version").fetchone()
    findings.append(Finding(True, f"PostgreSQL {version[0] if version else '?'}"))
    try:
        problems = readiness.check(conn, target)
    except CaptureError as exc:  # tables that do not exist: nothing else is meaningful
        return [*findings, Finding(False, str(exc), "create the table(s) or correct --tables")]
    by_topic = {p.what.split(" ", 1)[0]: p for p in problems}
    if "wal_level" not in by_topic:
        findings.append(Finding(True, "wal_level = logical"))
    if "role" not in by_topic:
        role = conn.execute(
            "SELECT rolname, CASE WHEN rolsuper THEN 'SUPERUSER' ELSE 'REPLICATION' END"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        findings.append(Finding(True, f"role {role[0]} has {role[1]}" if role else "role ok"))
    findings += _capacity(conn, target)
    findings += [Finding(False, p.what, p.fix, who=p.who, step=p.step) for p in problems]
    missing_publication = any(p.what.startswith("publication") for p in problems)
    if not missing_publication:
        findings.append(Finding(True, f"publication {target.publication} covers the tables"))
    else:
        findings += _may_create_publication(conn, target)
    if not any(p.what.startswith("replication slot") for p in problems):
        findings.append(_slot_lag(conn, target))
    findings += _tables(conn, target, problems)
    findings += _readable(conn, target)
    return findings


def _capacity(conn: Conn, target: CaptureTarget) -> list[Finding]:
    row = conn.execute(
        "SELECT current_setting('max_replication_slots')::int,"
        " (SELECT count(*) FROM pg_replication_slots),"
        " (SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s),"
        " current_setting('max_wal_senders')::int,"
        " (SELECT count(*) FROM pg_stat_replication)",
        [target.slot],
    ).fetchone()
    if row is None:
        return []
    max_slots, used_slots, ours, max_senders, senders = (int(v) for v in row)
    findings = []
    slots_ok = ours > 0 or used_slots < max_slots
    findings.append(Finding(
        slots_ok,
        f"replication slots: {used_slots} of {max_slots} used"
        + ("" if slots_ok else f", none free for {target.slot}"),
        f"ALTER SYSTEM SET max_replication_slots = {max_slots + 10};  -- or drop unused slots",
    ))
    senders_ok = senders < max_senders
    findings.append(Finding(
        senders_ok,
        f"WAL senders: {senders} of {max_senders} in use",
        f"ALTER SYSTEM SET max_wal_senders = {max_senders + 10};",
    ))
    return findings


def _slot_lag(conn: Conn, target: CaptureTarget) -> Finding:
    row = conn.execute(
        "SELECT active, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(),"
        " confirmed_flush_lsn)), confirmed_flush_lsn::text"
        " FROM pg_replication_slots WHERE slot_name = %s",
        [target.slot],
    ).fetchone()
    if row is None:
        return Finding(True, f"replication slot {target.slot}: not found", blocking=False)
    active, lag, flushed = row
    state = "in use by a capture" if active else "idle (WAL is retained until capture runs)"
    return Finding(
        True, f"replication slot {target.slot}: {state}, confirmed {flushed}, lag {lag}"
    )


def _tables(conn: Conn, target: CaptureTarget, problems: list[readiness.Problem]) -> list[Finding]:
    findings = []
    for table in readiness.tracked_tables(conn, target):
        if any(p.what.startswith(f"table {table} ") for p in problems):
            continue
        has_pk = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = to_regclass(%s)"
            " AND indisprimary)",
            [readiness.qualified(conn, table)],
        ).fetchone()
        note = "" if has_pk and has_pk[0] else ", no primary key: all columns form the key"
        findings.append(Finding(True, f"table {table}: REPLICA IDENTITY FULL{note}"))
    if not findings and not problems:
        findings.append(Finding(True, "no tables to track yet", blocking=False))
    return findings


def _may_create_publication(conn: Conn, target: CaptureTarget) -> list[Finding]:
    """Whether this role could create the missing publication (`capture --setup`)."""
    row = conn.execute(
        "SELECT current_user, rolsuper, has_database_privilege(current_database(), 'CREATE'),"
        " pg_get_userbyid(d.datdba) FROM pg_roles, pg_database d"
        " WHERE rolname = current_user AND d.datname = current_database()"
    ).fetchone()
    if row is None or row[1]:
        return []
    role, _, may_create, owner = row
    database = conn.info.dbname
    if may_create:
        return [Finding(True, f"role {role} may create publications (CREATE on {database})")]
    return [Finding(
        False,
        f"role {role} has no CREATE on database {database}: `capture --setup` cannot create "
        f"publication {target.publication}",
        f"GRANT CREATE ON DATABASE {sql.Identifier(database).as_string(conn)} TO "
        f"{sql.Identifier(role).as_string(conn)};  -- or have the publication created for it",
        blocking=False, who=f"the owner of database {database} ({owner}) or a superuser",
        step=Step.GRANT,
    )]


def _readable(conn: Conn, target: CaptureTarget) -> list[Finding]:
    """SELECT on the tracked tables: capture streams without it, but `serve` (snapshots,
    batch loads) and `worker` (dumps) read the tables, often with the same role."""
    role = conn.info.user
    tables = readiness.tracked_tables(conn, target)
    findings = []
    for table in tables:
        row = conn.execute(
            "SELECT has_table_privilege(oid, 'SELECT'), pg_get_userbyid(relowner)"
            " FROM pg_class WHERE oid = to_regclass(%s)",
            [readiness.qualified(conn, table)],
        ).fetchone()
        if row is None or row[0]:
            continue
        findings.append(Finding(
            False,
            f"role {role} may not SELECT {table}: capture runs, but serve and worker cannot "
            "read it with this role",
            f"GRANT SELECT ON {readiness.qualified(conn, table)} TO "
            f"{sql.Identifier(role).as_string(conn)};",
            blocking=False, who=f"the owner of {table} ({row[1]}) or a superuser",
            step=Step.GRANT,
        ))
    if tables and not findings:
        findings.append(Finding(True, f"role {role} may SELECT the tracked tables"))
    return findings


def render(findings: list[Finding], *, header: str) -> tuple[str, bool]:
    """The report text and whether capture can run."""
    lines = [header]
    for f in findings:
        mark = "ok  " if f.ok else "FAIL" if f.blocking else "WARN"
        lines.append(f"  {mark}  {f.what}")
    fixes = sorted((f for f in findings if not f.ok and f.fix), key=lambda f: f.step)
    server = [f"as {f.who}: {f.fix}" for f in fixes if f.step is Step.SERVER]
    steps = [*server, *(["restart PostgreSQL (server settings apply at start)"] if server else []),
             *(f"as {f.who}: {f.fix}" for f in fixes if f.step is not Step.SERVER)]
    if steps:
        lines.append("to fix, in this order (each as the role named):")
        lines += [f"  {number}. {step}" for number, step in enumerate(steps, 1)]
    blocking = [f for f in findings if not f.ok and f.blocking]
    if blocking:
        lines.append(f"capture cannot run: {len(blocking)} problem(s) above")
    else:
        lines.append("capture can run")
    return "\n".join(lines), not blocking
