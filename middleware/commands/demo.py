"""`pgsift demo`: the example app with pgsift in front, on throwaway servers.

The demo itself is example code (`examples/demo.py`: the issue tracker, its
writer and web page), which is not part of the installed package. This command
finds it in the source checkout pgsift is installed from and runs it; the I/O
layer never imports `examples`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pgsift.middleware.errors import ConfigError, GatewayError
from pgsift.middleware.gateway.listen import bind

# middleware/commands/demo.py -> the checkout's root.
CHECKOUT = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the issue-tracker demo: embedded Postgres + Redis unless PGSIFT_* URLs are set",
    )
    parser.add_argument("--port", type=int, default=8000, help="port of the demo page")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, default=10_000, help="issues to seed (1..1,000,000)")
    parser.set_defaults(func=run)


def check_port(host: str, port: int) -> None:
    """Fail at once when the demo page's port is taken, not after servers and the seed.

    The gateway binds it again later; losing a race meanwhile ends the demo as
    any of its processes that dies does.
    """
    try:
        bind(host, port).close()
    except GatewayError as exc:
        raise GatewayError(
            f"{exc}; stop what uses it or pick another port: --port {port + 1}"
            f' (make demo ARGS="--port {port + 1}")'
        ) from exc


def run(args: argparse.Namespace) -> int:
    # Before starting a second interpreter: its imports take a while.
    check_port(args.host, args.port)
    if not (CHECKOUT / "examples" / "demo.py").exists():
        raise ConfigError(
            "pgsift demo runs from a source checkout (it needs examples/): "
            "clone the repository and run `make demo`"
        )
    argv = [
        sys.executable, "-m", "examples.demo",
        "--port", str(args.port), "--host", args.host, "--size", str(args.size),
    ]
    os.chdir(CHECKOUT)
    # Replace this process, so signals (Ctrl-C, SIGTERM) reach the demo directly.
    os.execv(sys.executable, argv)
