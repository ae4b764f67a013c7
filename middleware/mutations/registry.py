"""The app's mutators, named in `pgsift.toml`, imported and checked at start-up.

    [mutators]
    create_issue = "myapp.mutators:create_issue"      # any authenticated caller

    [mutators.set_status]
    function = "myapp.mutators:set_status"
    claims = { role = ["admin", "member"] }           # see `access`

A mutator is a plain function `fn(conn, args, claims)`: `conn` is a psycopg 3
(synchronous) connection inside the transaction that also advances the client's
mutation id, `args` the mutation's validated JSON object, `claims` the caller's
verified token claims. It writes with `conn`, may raise
`pgsift.middleware.mutations.Refused("why")`, and its return value is ignored.
It must not commit, roll back or change session settings: pgsift owns the
transaction. Modules are imported as Python imports them, with the working
directory on `sys.path` (as uvicorn does), so `myapp` may live next to
`pgsift.toml`. Anything wrong is a ConfigError naming the mutator.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import psycopg

from pgsift.middleware.errors import ConfigError
from pgsift.middleware.mutations.access import ClaimRule

MutatorFunction = Callable[[psycopg.Connection[Any], dict[str, Any], dict[str, Any]], object]

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_KEYS = frozenset({"function", "claims"})


@dataclass(frozen=True, slots=True)
class Mutator:
    """One configured mutator: its name, the function, who may call it."""

    name: str
    target: str  # "module:function", as configured
    function: MutatorFunction
    access: ClaimRule


# The configured mutators by name, read-only.
Mutators = Mapping[str, Mutator]


def load_mutators(config: Mapping[str, Any]) -> Mutators:
    """Import every mutator of the `[mutators]` table; ConfigError on the first problem."""
    mutators = {}
    for name, spec in config.items():
        if not NAME.match(name):
            raise ConfigError(
                f"mutator {name!r}: a name is letters, digits and _ (not starting with a digit)"
            )
        target: Any
        if isinstance(spec, str):
            target, claims = spec, None
        elif isinstance(spec, Mapping):
            unknown = sorted(set(spec) - _KEYS)
            if unknown:
                raise ConfigError(f"mutator {name}: unknown key(s) {', '.join(unknown)}")
            target, claims = spec.get("function"), spec.get("claims")
            if not isinstance(target, str):
                raise ConfigError(f'mutator {name}: function = "module:function" is required')
        else:
            raise ConfigError(
                f'mutator {name}: expected "module:function" or a table with function = ...'
            )
        mutators[name] = Mutator(name, target, _import(name, target), ClaimRule.from_config(
            name, claims
        ))
    return MappingProxyType(mutators)


def _import(name: str, target: str) -> MutatorFunction:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f'mutator {name}: {target!r} is not "module:function"')
    _working_directory_importable()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"mutator {name}: cannot import module {module_name!r} ({exc})") from exc
    function: Any = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise ConfigError(f"mutator {name}: module {module_name!r} has no {attribute!r}")
    if not callable(function) or inspect.iscoroutinefunction(function):
        raise ConfigError(
            f"mutator {name}: {target!r} must be a plain function fn(conn, args, claims)"
        )
    try:
        inspect.signature(function).bind(None, None, None)
    except TypeError as exc:
        raise ConfigError(
            f"mutator {name}: {target!r} must accept (conn, args, claims): {exc}"
        ) from exc
    except ValueError:
        pass  # a builtin without a signature: trust it
    checked: MutatorFunction = function
    return checked


def _working_directory_importable() -> None:
    # `pgsift serve` runs as a console script, whose sys.path lacks the working
    # directory that `python -m` would have put there.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
