"""The bounded inbox of a subscription and its connection's shared send budget."""

from __future__ import annotations

from typing import Any

from pgsift.middleware.gateway.inbox import Inbox, SendBudget
from pgsift.middleware.gateway.reassembly import RoutedTx

SHAPE: Any = object()  # the inbox only carries it


def tx(lsn: int) -> RoutedTx:
    return RoutedTx(f"{lsn}-0", lsn, 1, 0.0, (), False)


async def test_the_budget_is_shared_and_overflow_is_sticky() -> None:
    budget = SendBudget(2)
    first, second = Inbox(SHAPE, budget, 0), Inbox(SHAPE, budget, 0)
    assert first.offer(tx(1)) and second.offer(tx(1))
    assert not first.offer(tx(2))  # the connection's budget is spent
    assert first.overflowed and budget.used == 1  # its queue was given back
    assert await first.get() is None
    assert not first.offer(tx(3))
    assert await second.get() == tx(1)
    assert budget.used == 0


async def test_a_released_inbox_drops_late_deliveries() -> None:
    budget = SendBudget(5)
    inbox = Inbox(SHAPE, budget, 0)
    inbox.offer(tx(1))
    inbox.release()
    assert budget.used == 0
    assert inbox.offer(tx(2))
    assert budget.used == 0
