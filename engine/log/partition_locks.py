"""One holder per log partition in the whole cluster, elected by PostgreSQL session advisory locks.

Two jobs need a single holder per partition: projecting it (engine/readmodels/runner.py) and, when
appends are routed, writing it (engine/cluster/routed_appends.py). Each takes the locks
`(lock_class, partition)` of free partitions up to its share, the partition count divided by the
processes sharing them, rounded up, and hands back what is over its share when more processes come.
A lock lives as long as the session that took it, so a process or connection that dies frees its
partitions for the others at once; the locks only save work and waiting, and correctness never
depends on them (every writer checks its partition's head, every projection step locks its
checkpoint row).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_TRY_LOCK = "SELECT pg_try_advisory_lock(:c, :p)"
_UNLOCK = "SELECT pg_advisory_unlock(:c, :p)"


async def balance(
    conn: AsyncConnection, lock_class: int, held: set[int], partitions: Iterable[int], sharing: int
) -> list[int]:
    """Take free partitions into `held` up to this holder's share and hand back what is over it, on
    `conn`'s session (commits); returns the partitions handed back."""
    ordered = sorted(partitions)
    share = -(-len(ordered) // max(1, sharing))
    for partition in ordered:
        if len(held) >= share:
            break
        key = {"c": lock_class, "p": partition}
        if partition not in held and (await conn.execute(text(_TRY_LOCK), key)).scalar():
            held.add(partition)
    released: list[int] = []
    while len(held) > share:
        partition = max(held)
        await conn.execute(text(_UNLOCK), {"c": lock_class, "p": partition})
        held.discard(partition)
        released.append(partition)
    await conn.commit()
    return released


__all__ = ["balance"]
