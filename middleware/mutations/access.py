"""Who may call a mutator: a rule over the caller's verified claims, from config.

    [mutators.set_status]
    function = "myapp.mutators:set_status"
    claims = { role = ["admin", "member"], team_ids = true }

Every listed claim must hold (AND). Per claim: `true` means present and not null;
a string or number means equal to it; a list means equal to one of its items.
When the caller's claim is itself a list, it holds when it contains the value
(or one of the listed values): `team_ids = 3` allows a caller whose `team_ids`
is `[1, 3]`. A mutator without `claims` is open to every authenticated caller.
Which rows a caller may touch is the mutator's own business: it gets the claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.errors import ConfigError

Scalar = str | int


@dataclass(frozen=True, slots=True)
class ClaimTest:
    """One claim's condition: `allowed` None means only "present and not null"."""

    claim: str
    allowed: tuple[Scalar, ...] | None

    def holds(self, claims: Mapping[str, Any]) -> bool:
        value = claims.get(self.claim)
        if value is None:
            return False
        if self.allowed is None:
            return True
        held = value if isinstance(value, list) else [value]
        return any(_same(item, allowed) for item in held for allowed in self.allowed)

    def describe(self) -> str:
        if self.allowed is None:
            return f"claim {self.claim}"
        if len(self.allowed) == 1:
            return f"claim {self.claim} = {self.allowed[0]!r}"
        return f"claim {self.claim} in {list(self.allowed)!r}"


@dataclass(frozen=True, slots=True)
class ClaimRule:
    """The access rule of one mutator; no tests: every authenticated caller."""

    tests: tuple[ClaimTest, ...] = ()

    @classmethod
    def from_config(cls, mutator: str, config: Any) -> ClaimRule:
        """The rule of `[mutators.<name>] claims = {...}`; ConfigError naming what is wrong."""
        if config is None:
            return cls()
        where = f"mutator {mutator}: claims"
        if not isinstance(config, Mapping):
            raise ConfigError(f"{where} must be a table of claim = condition")
        tests = []
        for claim, condition in config.items():
            tests.append(ClaimTest(str(claim), _allowed(f"{where}.{claim}", condition)))
        return cls(tuple(tests))

    def refusal(self, claims: Mapping[str, Any]) -> str | None:
        """Why a caller with `claims` may not call the mutator; None when it may."""
        failed = [test.describe() for test in self.tests if not test.holds(claims)]
        if not failed:
            return None
        return "not allowed: this mutator needs " + " and ".join(failed)


def _allowed(where: str, condition: Any) -> tuple[Scalar, ...] | None:
    if condition is True:
        return None
    items = condition if isinstance(condition, list) else [condition]
    if not items or not all(_scalar(item) for item in items):
        raise ConfigError(
            f"{where}: expected true, a string, a number or a non-empty list of them, "
            f"got {condition!r}"
        )
    return tuple(items)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _same(held: Any, allowed: Scalar) -> bool:
    # True == 1 in Python; a boolean claim never equals a number here.
    return not isinstance(held, bool) and type(held) is type(allowed) and held == allowed
