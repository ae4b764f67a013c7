"""Per-key work of a big request, done in slices so that the event loop keeps turning.

A request for thousands of keys costs the gateway's one event loop a few
microseconds per key at each step (typing the key, a cache lookup, the policy
check, the wire form). Done in one go, that stalls every other connection of
the process (health checks included) for as long; `sliced` does it `SLICE`
items at a time and lets the loop run between slices. A request of at most
one slice, the usual case, runs straight through as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

# Items handled between two turns of the event loop: a few milliseconds of work.
SLICE = 1000


async def sliced(items: Sequence[T], step: Callable[[int, T], U]) -> list[U]:
    """`[step(index, item) for index, item in enumerate(items)]`, yielding between slices."""
    done: list[U] = []
    for start in range(0, len(items), SLICE):
        if start:
            await asyncio.sleep(0)
        end = min(start + SLICE, len(items))
        done.extend(step(index, items[index]) for index in range(start, end))
    return done
