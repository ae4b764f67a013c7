"""`pgsift doctor`: every precondition of capture, checked, with the SQL that fixes it.

The blocking checks are exactly `readiness.check`'s (what `pgsift capture`
refuses on); doctor adds capacity (free slots and WAL senders), the slot's lag
and a line per tracked table, so an operator sees the whole picture at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgsift.middleware.capture import readiness
from pgsift.middleware.capture.readiness import CaptureTarget, Conn
from pgsift.middleware.errors import CaptureError


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""
    blocking: bool = True  # capture cannot run while this is not ok


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
    findings += [Finding(False, p.what, p.fix) for p in problems]
    if not any(p.what.startswith("publication") for p in problems):
        findings.append(Finding(True, f"publication {target.publication} covers the tables"))
    if not any(p.what.startswith("replication slot") for p in problems):
        findings.append(_slot_lag(conn, target))
    findings += _tables(conn, target, problems)
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
        "ALTER SYSTEM SET max_replication_slots = "
        f"{max_slots + 10};  -- then restart PostgreSQL, or drop unused slots",
    ))
    senders_ok = senders < max_senders
    findings.append(Finding(
        senders_ok,
        f"WAL senders: {senders} of {max_senders} in use",
        f"ALTER SYSTEM SET max_wal_senders = {max_senders + 10};  -- then restart PostgreSQL",
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


def render(findings: list[Finding], *, header: str) -> tuple[str, bool]:
    """The report text and whether capture can run."""
    lines = [header]
    for f in findings:
        lines.append(f"  {'ok  ' if f.ok else 'FAIL'}  {f.what}")
        if not f.ok and f.fix:
            lines.append(f"          fix: {f.fix}")
    blocking = [f for f in findings if not f.ok and f.blocking]
    if blocking:
        lines.append(f"capture cannot run: {len(blocking)} problem(s) above")
    else:
        lines.append("capture can run")
    return "\n".join(lines), not blocking
