"""Nested inner sets kept current live: region reads of the tailer's own, before routing.

A set that reads another (`lead IN (SELECT user_id FROM members ...)` inside
an inner select) changes when the set it reads changes, by rows of its own
table that no feed change names: those of the *region* (`plan_move` over the
dependent set). The outer sets depend on the result, so the tailer reads the
regions at `T`'s last chunk, before routing `T` (docs/relational.md, "Nested
sets"), level by level from the deepest:

1. every held set reading a set that changed in `T` gets the `Move` of that
   set's delta (`plan_move(dependent, dependent.fetched, delta, registry)`);
   a dependent pending with a snapshot that saw `T` holds `T` already;
2. each set's moves of the level are read in one statement (`move_statement`)
   on the tailer's own connection, retaken until its snapshot sees `T`;
3. `registry.apply_move` for each, and the deltas it gives join `T`'s
   (`SetRouter.merge`): the next level's input. A set two deep or more first
   gets `T`'s changes of its own rows again (`SetRouter.reapply`):
   `registry.apply` judged them with the sets it reads before their moves.

Experimental, behind `relational_nested_live` (off: `sync` refuses nested
selects). Rows the snapshot has from transactions after `T` get no skip: the
set holds its rows by key and every later change of one is applied in commit
order, so every set ends exact; but a client's copy can keep a row under
heavy churn (docs/relational.md, "Nested sets", "What is not solved"). A
read that fails, or a move without a region (`refetch`), drops the dependent
and every set reading it (`SetRegistry.evict`): their subscriptions refetch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.feed.entry import FeedEntry
from pgsift.middleware.gateway.moves import (
    MOVE_ATTEMPTS,
    MOVE_RETRY_FIRST_S,
    MOVE_RETRY_S,
    move_statement,
)
from pgsift.middleware.gateway.set_loading import Connect
from pgsift.middleware.gateway.set_router import SetRouter
from pgsift.subscriptions.inner import InnerSet
from pgsift.subscriptions.moves import IN_SHAPE, Move, plan_move

log = logging.getLogger(__name__)


def depth(inner: InnerSet) -> int:
    """How deep `inner` nests (0: it reads no other set)."""
    return 1 + max((depth(d) for d in inner.dependencies), default=-1)


class NestedSets:
    """The tailer's region reads for nested sets (see the module docstring)."""

    def __init__(self, router: SetRouter[Any], connect: Connect) -> None:
        self.router = router
        self._connect = connect
        self.reads = 0  # statements run (retries included)
        self.evicted = 0  # sets dropped because a read failed or had no region

    async def settle(self, entry: FeedEntry) -> None:
        """Take `entry` (a chunk) into the router; at a transaction's last chunk, bring
        the nested sets up to it. The router's `route(entry)` follows."""
        router = self.router
        router.take(entry)
        if not entry.last:
            return
        registry = router.registry
        done: set[str] = set()
        while True:
            changed = router.tx_deltas()
            waiting = {
                dependent.key: dependent
                for key in changed
                for dependent in registry.dependents(key)
                if dependent.key not in done
            }
            if not waiting:
                return
            # The shallowest first: a set is read after every set it reads settled.
            level = min(depth(inner) for inner in waiting.values())
            if level > 1:
                # `registry.apply` judged the rows `T` changed of a set two deep with the
                # sets it reads before their region reads: judged again, now that those
                # settled. Its own region reads follow and overwrite its region.
                router.reapply({k for k, inner in waiting.items() if depth(inner) == level})
            planned: list[tuple[InnerSet, Move]] = []
            for inner in waiting.values():
                if depth(inner) != level:
                    continue
                done.add(inner.key)
                if router.skips(inner.key) or not registry.materialized(inner.key):
                    continue
                for dependency in inner.dependencies:
                    delta = changed.get(dependency.key)
                    if delta is None or not registry.materialized(dependency.key):
                        continue
                    move = plan_move(inner, inner.fetched, delta, registry)
                    if move is None:
                        continue
                    if move.refetch:  # no region to read: its readers start over
                        self._evict(inner.key)
                        break
                    planned.append((inner, move))
            # One statement per set: the regions of one set have the same columns (those
            # of two sets may not UNION).
            by_set: dict[str, list[Move]] = {}
            for inner, move in planned:
                if registry.materialized(inner.key):
                    by_set.setdefault(inner.key, []).append(move)
            for key, moves in by_set.items():
                await self._apply(waiting[key], moves, entry.xid)

    async def _apply(self, inner: InnerSet, moves: list[Move], xid: int) -> None:
        """Read `inner`'s moves at a snapshot that sees `xid` and apply them."""
        try:
            rows = await self._read(moves, xid)
        except (psycopg.Error, OSError):
            log.exception("reading the region of a nested inner set failed; its "
                          "subscriptions refetch")
            rows = None
        registry = self.router.registry
        if rows is None:
            self._evict(inner.key)
            return
        # A set released meanwhile (its last subscription ended while we read).
        if not registry.materialized(inner.key):
            return
        width = len(inner.fetched)
        images: list[list[dict[str, Any]]] = [[] for _ in moves]
        for row in rows:
            if row[1] is None:
                continue  # the snapshot's row when no region has a row
            image = dict(zip(inner.fetched, row[2 : 2 + width], strict=True))
            image[IN_SHAPE] = row[2 + width]
            images[row[1]].append(image)
        for each in images:  # in order: a later move's rows win
            delta = registry.apply_move(inner.key, each, flagged=True)
            if delta:
                self.router.merge(delta)

    async def _read(self, moves: list[Move], xid: int) -> list[tuple[Any, ...]] | None:
        """The rows of `move_statement(moves)` at a snapshot that sees `xid`; None when
        none did after `MOVE_ATTEMPTS`."""
        sql, params = move_statement(moves)
        pause = MOVE_RETRY_FIRST_S
        for _ in range(MOVE_ATTEMPTS):
            self.reads += 1
            async with self._connect() as conn:
                cursor = await conn.execute(sql, params)
                rows = await cursor.fetchall()
            if Snapshot.parse(str(rows[0][0])).visible(xid):
                return rows
            await asyncio.sleep(pause)
            pause = min(pause * 2, MOVE_RETRY_S)
        log.error("no snapshot saw transaction %s after %s reads", xid, MOVE_ATTEMPTS)
        return None

    def _evict(self, key: str) -> None:
        """Drop set `key` and every set reading it; the router's next `route` tells
        their listeners to refetch."""
        self.evicted += 1
        self.router.registry.evict(key)
