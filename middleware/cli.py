"""The `pgsift` command: one subcommand module per job, registered here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pgsift.subscriptions.errors import PgsiftError

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgsift", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except PgsiftError as exc:
        print(f"pgsift: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
