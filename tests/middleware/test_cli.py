"""`pgsift`'s parser: every command is listed; running one imports only its module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgsift.middleware.cli import COMMAND_MODULES, build_parser
from tests.middleware.capture.processes import run_cli

COMMANDS = [name.rpartition(".")[2] for name in COMMAND_MODULES]


def test_help_and_unknown_commands_list_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["--log-level", "WARNING", "nope"]):
        with pytest.raises(SystemExit):
            build_parser(argv).parse_args(argv)
        out = capsys.readouterr()
        assert all(command in out.out + out.err for command in COMMANDS), argv


def test_a_named_command_parses_as_before() -> None:
    argv = ["--log-level", "WARNING", "feed", "tail", "--from", "5-0"]
    args = build_parser(argv).parse_args(argv)
    assert (args.command, args.log_level, args.func.__module__) == (
        "feed", "WARNING", "pgsift.middleware.commands.feed"
    )


def test_capture_does_not_import_the_query_compiler_or_rq() -> None:
    """A long-running command pays for its own imports only (sqlglot: ~0.1 s)."""
    code = (
        "import sys\n"
        "from pgsift.middleware.cli import build_parser\n"
        "build_parser(['capture', '--all'])\n"
        "print(sorted(m for m in ('sqlglot', 'rq', 'strawberry') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


BOGUS = "postgres:/bogus"
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    "argv",
    [
        ["capture", "--database-url", BOGUS, "--redis-url", NO_REDIS, "--all"],
        ["serve", "--database-url", BOGUS, "--redis-url", NO_REDIS],
        ["doctor", "--database-url", BOGUS],
        ["feed", "tail", "--database-url", BOGUS, "--redis-url", NO_REDIS],
        ["worker", "--database-url", BOGUS, "--redis-url", NO_REDIS],
        ["warm", "--database-url", BOGUS, "--redis-url", NO_REDIS],
    ],
)
def test_a_malformed_database_url_is_one_line_and_exit_code_2(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "pgsift: error: setting database_url: 'postgres:/bogus' is not a Postgres URL (missing "
        '"=" after "postgres:/bogus" in connection info string); write it as '
        "postgresql://user:password@host:5432/dbname"
    ]


def test_debug_shows_the_traceback_too() -> None:
    result = run_cli("doctor", "--database-url", BOGUS, "--debug")
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("pgsift: error: setting database_url")


def test_serve_with_redis_down_says_so_in_one_line(database_url: str) -> None:
    result = run_cli("serve", "--database-url", database_url, "--redis-url", NO_REDIS,
                     "--port", "0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgsift: error: cannot reach Redis: "), lines
    assert lines[0].endswith("check redis_url (--redis-url, PGSIFT_REDIS_URL) and that Redis is "
                             "running")


def test_serve_with_a_cluster_down_says_so_in_one_line(database_url: str) -> None:
    result = run_cli("serve", "--database-url", database_url, "--redis-url",
                     NO_REDIS.replace("redis://", "redis+cluster://"), "--port", "0")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "pgsift: error: cannot reach Redis: Redis Cluster"), lines


def test_serve_refuses_fewer_than_one_worker() -> None:
    result = run_cli("serve", "--workers", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "pgsift: error: --workers 0: give at least 1 gateway process"
    ]


def test_an_unknown_variable_is_warned_about_by_any_command() -> None:
    result = run_cli("doctor", "--database-url", BOGUS, env={"PGSIFT_CAPTURE_SLOTT": "x"})
    assert ("PGSIFT_CAPTURE_SLOTT is not a pgsift setting and is ignored; did you mean "
            "PGSIFT_CAPTURE_SLOT?") in result.stderr
