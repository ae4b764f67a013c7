"""The demo: the issue tracker with pgsift in front of it, live in a browser.

    python -m examples.demo [--port 8000] [--size 10000] [--host 127.0.0.1]

With PGSIFT_DATABASE_URL / PGSIFT_REDIS_URL set it uses those servers, else it
starts throwaway ones. It loads the example schema and seed, then runs capture,
an RQ worker, the gateway with the demo page (`examples.web.server`) and the
writer as child processes, prints what to try and a line with `ready`, and
stays up until Ctrl-C (or SIGTERM), cleaning everything up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from examples.demo_processes import Children, DemoFailure
from examples.issue_tracker import apply_schema, demo_users, issue_token, seed
from pgsift.middleware.commands.demo import check_port
from pgsift.middleware.embedded import EmbeddedPostgres, EmbeddedRedis
from pgsift.middleware.progress import ProgressDisplay
from pgsift.middleware.settings import Settings, load_settings
from pgsift.subscriptions.errors import PgsiftError

CONFIG = Path(__file__).resolve().parent / "issue_tracker" / "pgsift.toml"
DATABASE = "issue_tracker"  # the embedded server's database (and so the feed's name)
MAX_SIZE = 1_000_000
WRITER_RATE = 2.0  # transactions/s: slow enough to follow on the page
READY_TIMEOUT_S = 120.0
OPEN_ISSUES = (
    "SELECT id, team_id, number, title, status, priority, assignee_id, updated_at "
    "FROM issues WHERE team_id = $1 AND status NOT IN ('done', 'canceled')"
)
PGSIFT = [sys.executable, "-m", "pgsift.middleware.cli", "--log-level", "WARNING"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="the page's address (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="the page's port (%(default)s)")
    parser.add_argument("--size", type=int, default=10_000,
                        help="issues to seed, up to 1,000,000 (%(default)s)")
    args = parser.parse_args(argv)
    if not 1 <= args.size <= MAX_SIZE:
        parser.error(f"--size must be between 1 and {MAX_SIZE:,}")
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: unwind, clean up
    try:
        with ExitStack() as cleanup:
            try:
                run(args, load_settings(CONFIG), cleanup)
            finally:
                # Once cleaning up, a second Ctrl-C must not cut it short.
                for signum in previous:
                    signal.signal(signum, signal.SIG_IGN)
    except KeyboardInterrupt:
        say("pgsift demo stopped; what it started is stopped and removed")
        return 0
    except (DemoFailure, PgsiftError, psycopg.Error) as exc:
        print(f"pgsift demo failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace, settings: Settings, cleanup: ExitStack) -> None:
    """Start everything (registering its cleanup first), then watch the children forever."""
    check_port(args.host, args.port)
    database_url, redis_url = servers(settings, cleanup)
    load_example(database_url, args.size)
    drop_new_slot_on_exit(database_url, settings.capture_slot, cleanup)
    log_dir = Path(tempfile.mkdtemp(prefix="pgsift-demo-"))
    cleanup.callback(shutil.rmtree, log_dir, ignore_errors=True)
    children = Children(log_dir)
    cleanup.callback(children.stop)
    urls = ["--database-url", database_url, "--redis-url", redis_url, "--config", str(CONFIG)]

    capture = children.start("capture", [*PGSIFT, "capture", *urls, "--all", "--setup"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        children.wait_for(lambda: slot_active(conn, settings.capture_slot), capture,
                          "streaming changes", timeout=READY_TIMEOUT_S)
    say("capture:  every committed change flows into the Redis feed")
    children.start("worker", [*PGSIFT, "worker", *urls])
    say("worker:   one RQ worker (bootstrap dumps, warming, feed trimming)")
    gateway = children.start("gateway", [
        sys.executable, "-m", "examples.web.server", *urls,
        "--host", args.host, "--port", str(args.port),
    ])
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::', '') else args.host}:{args.port}"
    children.wait_for(lambda: healthy(base), gateway, "healthy", timeout=READY_TIMEOUT_S)
    say(f"gateway:  {base}/ (GraphQL at /graphql, /v1/bootstrap, /v1/rows, /healthz)")
    children.start("writer", [
        sys.executable, "-m", "examples.issue_tracker.writer", "--database-url", database_url,
        "--rate", str(WRITER_RATE), "--duration", "inf",
    ])
    say(f"writer:   the app's users at work, {WRITER_RATE:g} transactions/s")
    tour(base, database_url, redis_url)
    say(f"pgsift demo ready: open {base}/ (Ctrl-C stops)")
    while True:
        children.check()
        time.sleep(0.5)


def servers(settings: Settings, cleanup: ExitStack) -> tuple[str, str]:
    """The configured URLs, or throwaway servers (stopped and removed on cleanup)."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url is None:
        postgres = EmbeddedPostgres()
        cleanup.callback(postgres.stop)
        postgres.start()
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}".encode())
        database_url = postgres.url_for(DATABASE)
        say(f"postgres: {database_url} (throwaway, in {postgres.base_dir})")
    else:
        say(f"postgres: {database_url} (PGSIFT_DATABASE_URL)")
    if redis_url is None:
        redis = EmbeddedRedis()
        cleanup.callback(redis.stop)
        redis.start()
        redis_url = redis.url
        say(f"redis:    {redis_url} (throwaway, in {redis.base_dir})")
    else:
        say(f"redis:    {redis_url} (PGSIFT_REDIS_URL)")
    return database_url, redis_url


def load_example(database_url: str, size: int) -> None:
    """The issue tracker's schema and a seed of `size` issues, unless it holds data."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('issues')").fetchone() == (None,):
            apply_schema(conn)
        if conn.execute("SELECT EXISTS (SELECT FROM teams)").fetchone() == (True,):
            say("seed:     the issue tracker's tables hold data; the demo uses it as it is")
            return
        say(f"seed:     {size:,} issues ...")
        with ProgressDisplay() as progress:
            task = progress.add("seed", total=size, unit="issues")
            result = seed(conn, issues=size, on_progress=lambda done: progress.update(task, done))
            progress.finish(task)
    counts = ", ".join(f"{table} {count:,}" for table, count in result.counts.items())
    say(f"seed:     done in {result.seconds:.1f} s: {counts}")


def drop_new_slot_on_exit(database_url: str, slot: str, cleanup: ExitStack) -> None:
    """Capture creates a replication slot; one left behind holds back WAL, so the demo
    drops the slot on exit unless it existed before (after the children have stopped)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if slot_exists(conn, slot):
            return

    def drop() -> None:
        drop_sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots" \
            " WHERE slot_name = %s AND NOT active"
        with contextlib.suppress(psycopg.Error), \
                psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(50):  # capture's connection may take a moment to go
                conn.execute(drop_sql, [slot])
                if not slot_exists(conn, slot):
                    return
                time.sleep(0.1)
        say(f"could not drop the replication slot {slot}; drop it: {drop_sql % repr(slot)}")

    cleanup.callback(drop)


def slot_exists(conn: psycopg.Connection[Any], slot: str) -> bool:
    query = "SELECT FROM pg_replication_slots WHERE slot_name = %s"
    return conn.execute(query, [slot]).fetchone() is not None


def slot_active(conn: psycopg.Connection[Any], slot: str) -> bool:
    row = conn.execute(
        "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot]
    ).fetchone()
    return row is not None and bool(row[0])


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def pgsift_command() -> str:
    """This install's `pgsift` as the user can type it: `make demo` does not put
    `.venv/bin` on PATH, so the venv's script by its full path unless PATH has it."""
    script = Path(sys.executable).with_name("pgsift")
    if not script.exists():
        return f"{sys.executable} -m pgsift.middleware.cli"
    return "pgsift" if shutil.which("pgsift") == str(script) else str(script)


def tour(base: str, database_url: str, redis_url: str) -> None:
    """What to try, with the demo users and commands filled in."""
    with psycopg.connect(database_url) as conn:
        users = demo_users(conn, limit=5)
        teams: dict[int, str] = dict(conn.execute("SELECT id, name FROM teams").fetchall())
        # A team the first user is not in, for the membership step.
        other = conn.execute("SELECT min(id) FROM teams WHERE id <> ALL(%s)",
                             [list(users[0].team_ids)]).fetchone()
    pgsift = pgsift_command()
    team = users[0].team_ids[0]
    bootstrap = f"{base}/v1/bootstrap?query={quote(OPEN_ISSUES)}&params={quote(json.dumps([team]))}"
    say("")
    say(f"Open {base}/ and try:")
    say("  1. Sign in as a demo user and pick one of their teams (or all of them):")
    for user in users:
        say(f"       {user.name} (user {user.id}): " + ", ".join(teams[t] for t in user.team_ids))
    say("  2. Watch the team's open issues: the writer creates, edits, reassigns and moves")
    say("     issues; rows appear, change and leave the list as it commits.")
    say("  3. Open an issue: its comments load through the batch loader and stay live.")
    say("  4. The change feed itself, one JSON line per transaction:")
    say(f"       {pgsift} feed tail --follow --redis-url {redis_url} --database-url {database_url}")
    say(f"  5. A streaming bootstrap over plain HTTP, as {users[0].name} (team {teams[team]}):")
    say(f"       curl -sN -H 'Authorization: Bearer {issue_token(users[0])}' \\")
    say(f"         '{bootstrap}'")
    if other is not None and other[0] is not None:
        say(f"  6. Memberships are the app's own table, read by the policy: sign in as"
            f" {users[0].name}, pick")
        say(f"     'All my teams', and add them to team {teams[other[0]]} in Postgres:")
        say(f"       psql '{database_url}' -c \\")
        say(f"         'INSERT INTO team_members (team_id, user_id) VALUES ({other[0]},"
            f" {users[0].id})'")
        say("     The team joins the picker and its open issues arrive live, with no new")
        say("     token; DELETE the row again and they leave.")
    say("Ctrl-C stops the demo and removes what it started.")
    say("")


if __name__ == "__main__":
    sys.exit(main())
