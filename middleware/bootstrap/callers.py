"""How many bootstraps one caller has in flight, and the cap on it (`bootstrap_max_per_caller`).

A caller is who its verified claims say it is: `iss` + `sub` when the token has
a subject, else the claims themselves without their times (`exp`, `iat`, `nbf`,
`jti`), so that a fresh token of the same identity counts as the same caller.
Anonymous callers (`auth.anonymous`) share their claims, so they share one cap.
Counted per gateway process, and only in memory: a slot is taken before any
work is done for the request, and given back when its response ends, however
it ends.

    slots = CallerSlots(per_caller=4)
    slot = slots.take(caller_of(claims))    # TooManyRequestsError past the cap
    ...
    slot.release()                          # idempotent
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pgsift.middleware.errors import TooManyRequestsError

# Claims that change from one token of a caller to the next.
TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "jti"})
RETRY_AFTER_S = 1


def caller_of(claims: Mapping[str, Any]) -> str:
    """The identity a cap counts `claims`' requests under."""
    subject = claims.get("sub")
    if isinstance(subject, str | int) and not isinstance(subject, bool):
        return json.dumps(["sub", claims.get("iss"), subject], default=str)
    rest = {k: v for k, v in claims.items() if k not in TIME_CLAIMS}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode())
    return "claims:" + digest.hexdigest()


class Slot:
    """One bootstrap in flight of one caller."""

    def __init__(self, slots: CallerSlots, caller: str) -> None:
        self._slots: CallerSlots | None = slots
        self.caller = caller

    def release(self) -> None:
        if self._slots is not None:
            self._slots.give_back(self.caller)
            self._slots = None


class CallerSlots:
    """Bootstraps in flight per caller, at most `per_caller` each."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self.total = 0
        self._held: dict[str, int] = {}

    def take(self, caller: str) -> Slot:
        """A slot for one more bootstrap of `caller`; TooManyRequestsError at the cap."""
        held = self._held.get(caller, 0)
        if held >= self.per_caller:
            raise TooManyRequestsError(
                f"too many bootstraps at once: this caller already has {held} bootstraps in "
                f"flight on this gateway, the most allowed (bootstrap_max_per_caller = "
                f"{self.per_caller}); finish or close one, then retry",
                retry_after_s=RETRY_AFTER_S,
            )
        self._held[caller] = held + 1
        self.total += 1
        return Slot(self, caller)

    def held(self, caller: str) -> int:
        return self._held.get(caller, 0)

    def give_back(self, caller: str) -> None:
        left = self._held.get(caller, 0) - 1
        if left > 0:
            self._held[caller] = left
        else:
            self._held.pop(caller, None)
        self.total -= 1
