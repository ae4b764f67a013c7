"""Dump leases: a gateway serving a dump keeps the workers' clean-up from dropping it.

A gateway leases a dump *after* choosing it and then checks it is still
servable (`pgsift.middleware.bootstrap.finder` does both); the clean-up
(`pgsift.workers.trim.drop_stale_in`) claims a dump for dropping only when it
is not leased (`claim_for_drop`), atomically with the leases, so between the
two a dump is either served or dropped, never both.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from pgsift.middleware.dumps import keys
from pgsift.middleware.dumps.store import DumpInfo, DumpStore

LEASE_S = 900.0
# After serving, the client is about to sync from the dump's cursor.
CURSOR_GRACE_S = 600.0
# How long a dump claimed for dropping stays unservable (its deletion follows at once).
DROPPING_TTL_S = 3600


def lease(
    client: redis.Redis[bytes], database: str, dump_id: str, seconds: float = LEASE_S
) -> None:
    """Keep `dump_id` from being dropped for `seconds` (it is being served).

    A lease never shortens another gateway's lease of the same dump (GT). Taken
    after choosing the dump, it must be followed by `still_servable`: the dump
    may have been dropped in between (`DumpFinder.find` does both).
    """
    client.zadd(keys.dump_leases(database), {dump_id: time.time() + seconds}, gt=True)


def release(client: redis.Redis[bytes], database: str, dump_id: str) -> None:
    """Served: keep it (and the feed after its position) a little longer for the client's sync."""
    client.zadd(keys.dump_leases(database), {dump_id: time.time() + CURSOR_GRACE_S}, gt=True)


def still_servable(
    client: redis.Redis[bytes], database: str, store: DumpStore, info: DumpInfo
) -> bool:
    """After `lease`: the dump was neither claimed for dropping nor dropped meanwhile.

    With `claim_for_drop` this closes the race between choosing a dump and
    leasing it: a drop claimed before the lease shows here; one after it sees
    the lease (or its WATCH fails) and leaves the dump alone.
    """
    if client.exists(keys.dump_dropping(database, info.dump_id)):
        return False
    return any(i.dump_id == info.dump_id for i in store.dumps(info.header.shape_key))


def claim_for_drop(client: redis.Redis[bytes], database: str, dump_id: str) -> bool:
    """Mark `dump_id` as being dropped, unless it is leased; True: delete it now.

    Atomic with the leases (WATCH): a lease taken while claiming makes the claim fail.
    """
    leases = keys.dump_leases(database)
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(leases)
            until: Any = pipe.zscore(leases, dump_id)  # immediate while WATCHing
            if until is not None and float(until) > time.time():
                return False
            pipe.multi()
            pipe.set(keys.dump_dropping(database, dump_id), "1", ex=DROPPING_TTL_S)
            pipe.execute()
        except redis.WatchError:
            return False  # a lease changed meanwhile: try again at the next run
    return True


def leased_ids(client: redis.Redis[bytes], database: str) -> set[str]:
    """Dumps some gateway is serving now (expired leases are forgotten on the way)."""
    key = keys.dump_leases(database)
    client.zremrangebyscore(key, "-inf", time.time())
    return {i.decode() if isinstance(i, bytes) else str(i) for i in client.zrange(key, 0, -1)}
