"""One holder per log partition in the whole cluster, elected by PostgreSQL session advisory locks.

Two jobs need a single holder per partition: projecting it (engine/readmodels/runner.py) and, when
appends are routed, writing it (engine/cluster/routed_appends.py). Each takes the locks
`(lock_class, partition)` of free partitions up to its share and hands back what is over it when more
processes come. The shares add up to the partition count: the holders sharing them agree on an order
(`Standing`), and the first ones in it take one more where the count does not divide. Each rounding
its share up instead left a holder idle (4 partitions on 3 nodes went 2, 2, 0, not 2, 1, 1).
A lock lives as long as the session that took it, so a process or connection that dies frees its
partitions for the others at once; the locks only save work and waiting, and correctness never
depends on them (every writer checks its partition's head, every projection step locks its
checkpoint row).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_TRY_LOCK = "SELECT pg_try_advisory_lock(:c, :p)"
_UNLOCK = "SELECT pg_advisory_unlock(:c, :p)"


@dataclass(frozen=True)
class Standing:
    """Where a holder stands among those sharing the partitions: its place in an order they all agree
    on (for nodes, oldest first: engine/cluster/registry.py), and how many they are."""

    rank: int = 0
    holders: int = 1

    def share(self, partitions: int) -> int:
        """Its part of `partitions`; none for a rank past the holders (one not among them)."""
        if self.rank >= self.holders:
            return 0
        base, extra = divmod(partitions, max(1, self.holders))
        return base + (1 if self.rank < extra else 0)


ALONE: Standing = Standing()


async def balance(
    conn: AsyncConnection, lock_class: int, held: set[int], partitions: Iterable[int], standing: Standing
) -> list[int]:
    """Take free partitions into `held` up to this holder's share and hand back what is over it, on
    `conn`'s session (commits); returns the partitions handed back."""
    ordered = sorted(partitions)
    share = standing.share(len(ordered))
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


__all__ = ["ALONE", "Standing", "balance"]
