"""`pgsift`'s parser: every command is listed; running one imports only its module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgsift.middleware.cli import COMMAND_MODULES, build_parser

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
