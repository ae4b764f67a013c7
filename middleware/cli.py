"""The `pgsift` command: one subcommand module per job, registered here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from pgsift.middleware.commands.explain import explain

# Each module defines `register(subparsers)`, which adds its subcommand(s) and
# sets `func(args) -> int` as the handler. Modules are named, not imported, so the
# workers' commands (in `pgsift.workers`, the top layer) register here without
# middleware importing them.
COMMAND_MODULES: tuple[str, ...] = (
    "pgsift.middleware.commands.servers",
    "pgsift.middleware.commands.serve",
    "pgsift.middleware.commands.capture",
    "pgsift.middleware.commands.feed",
    "pgsift.middleware.commands.doctor",
    "pgsift.middleware.commands.demo",
    "pgsift.workers.commands.worker",
    "pgsift.workers.commands.warm",
)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `pgsift` parser; with `argv` naming a command, only that command's module
    is imported (a long-running command should not pay for the others' imports)."""
    parser = argparse.ArgumentParser(prog="pgsift", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (anywhere on the line)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = COMMAND_MODULES
    if argv is not None:
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument("--log-level")
        _, rest = options.parse_known_args(argv)
        named = [m for m in COMMAND_MODULES if rest and m.rpartition(".")[2] == rest[0]]
        modules = tuple(named) or COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a failure is one line on stderr and exit code 2 (`--debug`: and
    its traceback)."""
    if argv is None:
        argv = sys.argv[1:]
    # `--debug` is taken anywhere on the line: it is what one adds when a command failed.
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"pgsift: error: {explain(exc)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
