"""The example app: schema, deterministic seed, a writer that keeps the app's invariants."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest

from examples.issue_tracker import (
    DEMO_SECRET,
    TABLES,
    SeedSize,
    Writer,
    apply_schema,
    demo_users,
    drop_schema,
    issue_token,
    seed,
)
from examples.issue_tracker.workload import DEFAULT_WEIGHTS
from pgsift.middleware.mutations.registry import load_mutators
from pgsift.middleware.settings import load_settings
from pgsift.subscriptions.policy import policies_from_config

ROOT = Path(__file__).resolve().parents[2]

# Each query returns the rows that break one invariant of the app.
INVARIANTS = {
    "comment team is its issue's team": (
        "SELECT c.id FROM comments c JOIN issues i ON i.id = c.issue_id"
        " WHERE c.team_id <> i.team_id"
    ),
    "label belongs to the issue's team": (
        "SELECT il.issue_id FROM issue_labels il JOIN issues i ON i.id = il.issue_id"
        " JOIN labels l ON l.id = il.label_id WHERE l.team_id <> i.team_id"
    ),
    "assignee is a member of the team": (
        "SELECT i.id FROM issues i WHERE i.assignee_id IS NOT NULL AND NOT EXISTS"
        " (SELECT FROM team_members m WHERE m.team_id = i.team_id AND m.user_id = i.assignee_id)"
    ),
    "issue numbers were handed out by the team counter": (
        "SELECT i.id FROM issues i JOIN teams t ON t.id = i.team_id"
        " WHERE i.number < 1 OR i.number > t.issue_count"
    ),
    "updated after created": "SELECT id FROM issues WHERE updated_at < created_at",
    "comment without issue": (
        "SELECT c.id FROM comments c LEFT JOIN issues i ON i.id = c.issue_id WHERE i.id IS NULL"
    ),
    "every team has a member": (
        "SELECT t.id FROM teams t WHERE NOT EXISTS (SELECT FROM team_members m"
        " WHERE m.team_id = t.id)"
    ),
}


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        apply_schema(connection)
        yield connection


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {
        table: conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()[0]  # type: ignore[index]
        for table in TABLES
    }


def fingerprint(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """An md5 of every table's rows in key order."""
    result = {}
    for table in TABLES:
        row = conn.execute(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
            .encode()
        ).fetchone()
        assert row is not None
        result[table] = row[0]
    return result


def broken_invariants(conn: psycopg.Connection[Any]) -> dict[str, list[Any]]:
    broken = {}
    for name, sql in INVARIANTS.items():
        rows = conn.execute(sql.encode()).fetchall()
        if rows:
            broken[name] = rows[:5]
    return broken


def test_schema_applies_and_drops(conn: psycopg.Connection[Any]) -> None:
    keys = dict(
        conn.execute(
            "SELECT tc.table_name, array_agg(k.column_name::text ORDER BY k.ordinal_position)"
            " FROM information_schema.table_constraints tc"
            " JOIN information_schema.key_column_usage k USING (constraint_name, table_name)"
            " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public'"
            " GROUP BY tc.table_name"
        ).fetchall()
    )
    assert keys == {
        "teams": ["id"],
        "users": ["id"],
        "team_members": ["team_id", "user_id"],
        "issues": ["id"],
        "comments": ["id"],
        "labels": ["id"],
        "issue_labels": ["issue_id", "label_id"],
    }
    statuses = conn.execute("SELECT enum_range(NULL::issue_status)::text[]").fetchone()
    assert statuses == (["backlog", "todo", "in_progress", "in_review", "done", "canceled"],)
    drop_schema(conn)
    assert conn.execute("SELECT to_regclass('issues')").fetchone() == (None,)
    apply_schema(conn)
    assert counts(conn) == dict.fromkeys(TABLES, 0)


def test_seed_sizes_follow_the_issue_count(conn: psycopg.Connection[Any]) -> None:
    result = seed(conn, issues=3_000, seed=7)
    size = SeedSize.for_issues(3_000)
    assert result.counts == counts(conn)
    assert result.counts["issues"] == 3_000
    assert result.counts["teams"] == size.teams == 5
    assert result.counts["users"] == size.users == 60
    assert result.counts["labels"] == size.teams * size.labels_per_team
    # Comments: 0..4 per issue, 2 on average; labels: 0..2 per issue.
    assert 2 * 3_000 * 0.8 < result.counts["comments"] < 2 * 3_000 * 1.2
    assert 0 < result.counts["issue_labels"] <= 2 * 3_000
    assert broken_invariants(conn) == {}
    statuses = dict(conn.execute("SELECT status::text, count(*) FROM issues GROUP BY 1").fetchall())
    assert set(statuses) == {"backlog", "todo", "in_progress", "in_review", "done", "canceled"}
    # The writer inserts without ids: the sequences continue after the seed's.
    row = conn.execute("INSERT INTO teams (key, name) VALUES ('NEW', 'New') RETURNING id")
    assert row.fetchone() == (6,)
    with pytest.raises(ValueError, match="already holds data"):
        seed(conn, issues=10)


def test_seed_reports_progress_per_chunk(conn: psycopg.Connection[Any]) -> None:
    done: list[int] = []
    seed(conn, issues=2_500, on_progress=done.append)
    assert done == [1_000, 2_000, 2_500]


def test_big_sizes_scale_teams_and_users() -> None:
    assert SeedSize.for_issues(10_000).teams == 5
    million = SeedSize.for_issues(1_000_000)
    assert (million.teams, million.users) == (500, 20_000)
    with pytest.raises(ValueError):
        SeedSize.for_issues(-1)


def test_seed_is_deterministic(conn: psycopg.Connection[Any]) -> None:
    seed(conn, issues=1_500, seed=42)
    first = fingerprint(conn)
    drop_schema(conn)
    apply_schema(conn)
    seed(conn, issues=1_500, seed=42)
    assert fingerprint(conn) == first
    drop_schema(conn)
    apply_schema(conn)
    seed(conn, issues=1_500, seed=43)
    assert fingerprint(conn)["issues"] != first["issues"]


def test_writer_does_every_action_and_keeps_invariants(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    seed(conn, issues=500, seed=1)
    before = counts(conn)
    with Writer(database_url, 1) as writer:
        stats = writer.run(rate=None, duration=60.0, steps=600)
    assert stats.steps == 600
    assert set(stats.actions) == set(DEFAULT_WEIGHTS)
    assert broken_invariants(conn) == {}
    after = counts(conn)
    assert after["issues"] != before["issues"]
    assert after["comments"] != before["comments"]


def test_concurrent_writers_keep_invariants(
    conn: psycopg.Connection[Any], database_url: str
) -> None:
    seed(conn, issues=200, seed=2)
    failures: list[BaseException] = []

    def work(rng_seed: int) -> None:
        try:
            with Writer(database_url, rng_seed) as writer:
                writer.run(rate=None, duration=60.0, steps=300)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert broken_invariants(conn) == {}


def test_writer_on_a_connection_and_an_empty_database(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO teams (key, name) VALUES ('ONE', 'One')")
    conn.execute("INSERT INTO users (email, name) VALUES ('a@example.com', 'A')")
    conn.execute("INSERT INTO team_members (team_id, user_id) VALUES (1, 1)")
    writer = Writer(conn, 5)
    first = writer.step()
    # With no issue yet, any action falls back to creating one.
    assert first.action == "create_issue"
    assert first.issue_ids == (1,)
    for _ in range(50):
        writer.step()
    writer.close()
    assert not conn.closed
    assert broken_invariants(conn) == {}


def test_writer_run_is_paced_and_bounded(conn: psycopg.Connection[Any]) -> None:
    seed(conn, issues=100)
    stats = Writer(conn, 3).run(rate=40.0, duration=0.5)
    # Paced: never ahead of the schedule, so at most one step per 1/rate seconds.
    assert 1 <= stats.steps <= 40 * 0.5 + 1


def test_demo_users_list_memberships_and_tokens_name_them(conn: psycopg.Connection[Any]) -> None:
    seed(conn, issues=100)
    users = demo_users(conn, limit=3)
    assert len(users) == 3
    for user in users:
        teams = conn.execute(
            "SELECT array_agg(team_id ORDER BY team_id) FROM team_members WHERE user_id = %s",
            [user.id],
        ).fetchone()
        assert teams == (list(user.team_ids),)
        claims = jwt.decode(issue_token(user), DEMO_SECRET, algorithms=["HS256"])
        assert claims["sub"] == str(user.id) and claims["user_id"] == user.id
        # Memberships are read by the policies from team_members, not from the token.
        assert "team_ids" not in claims
        assert claims["exp"] > claims["iat"]


def test_command_lines(database_url: str) -> None:
    def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-W", "error", "-m", f"examples.issue_tracker.{module}",
             "--database-url", database_url, *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
        )

    seeded = run("seed", "--issues", "2500").stderr
    # Not on a terminal: no bar (nothing redrawn, no escape codes), only plain lines:
    # the result, after a progress line per 10 s if the machine is that slow.
    assert "\r" not in seeded and "\x1b" not in seeded
    *progress, result = seeded.splitlines()
    assert result.startswith("seeded in ") and "issues 2,500" in result
    assert all(re.fullmatch(r"seed: [\d,]+/2,500 issues, .*", line) for line in progress)
    assert "issues 300" in run("seed", "--issues", "300", "--reset").stderr
    assert "20 transactions" in run("writer", "--rate", "0", "--steps", "20").stderr
    assert run("tokens", "--limit", "2").stdout.count("token") == 2
    [token] = run("tokens", "--team", "2", "--limit", "1", "--token-only").stdout.split()
    user = jwt.decode(token, DEMO_SECRET, algorithms=["HS256"])["user_id"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT FROM team_members WHERE team_id = 2 AND user_id = %s",
                            [user]).fetchone() is not None


def test_example_configs_load_and_agree() -> None:
    settings = load_settings(ROOT / "examples" / "issue_tracker" / "pgsift.toml", environ={})
    assert settings.policies["public.issues"]["row"] == (
        "team_id IN (SELECT team_id FROM team_members WHERE user_id = auth.user_id)")
    assert set(policies_from_config(settings.policies)) == {
        f"public.{table}" for table in TABLES if table != "issue_labels"
    } | {"pgsift.clients"}  # a client reads its own row of the mutation ledger
    assert sorted(load_mutators(settings.mutators)) == ["create_issue", "set_status"]
    assert set(settings.capture_tables) == {f"public.{table}" for table in TABLES}
    assert settings.auth["jwt_secret"] == DEMO_SECRET
    # The cache warmer's file is the same configuration plus [[warm]] shapes:
    # dumps are keyed by shape, policy included, so the two must not drift apart.
    warmer = load_settings(ROOT / "examples" / "cache_warmer" / "pgsift.toml", environ={})
    assert warmer.replace(warm=()) == settings
    assert len(warmer.warm) == 3
    for shape in warmer.warm:
        assert {"query", "every"} <= set(shape) <= {"query", "params", "claims", "every"}
