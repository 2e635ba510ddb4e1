"""Which partition of the log a stream lives in, and how many partitions a log has.

A log is split into `P` partitions when it is created, one `log_head` row each, and `P` never changes
(moving a log to another `P` renumbers its positions; docs/scaling.md). Each partition has its own
head, its own gapless positions and its own writer, so appends to two partitions never wait for one
lock. A stream's partition is a hash of its durable stream id modulo `P`: a room's volatile twin lives
with the room, and a room's events, cells and sheets' edits share one partition.

Everything that follows the log keeps a position per partition: the delivery order and the follower
(engine/fanout/delivery_order.py, engine/cluster/follower.py), the projector runner's checkpoints,
the auditors' `/events` (one partition per request) and the cells rebuild. The count a new log gets
is `LOG_PARTITIONS` (`ensure_partitions`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from engine.log.session_settings import UNATTACHED_VANISH_WITHIN, session_settings
from engine.model.errors import ValidationFailed
from engine.model.events import NewEvent
from engine.model.streams import durable_stream

log = logging.getLogger(__name__)

MAX_PARTITIONS: Final = 1024
# How many nodes beat within the last minute and did not stop (engine/cluster/registry.py).
NODES_RUNNING = (
    "SELECT count(*) FROM nodes WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '1 minute'"
)


def partition_of(stream_id: str, partitions: int) -> int:
    """The stream's partition in a log of `partitions`: stable across processes and releases (a
    hash of the bytes, not Python's salted `hash`), so every node and every writer agree."""
    if partitions == 1:
        return 0
    return _hashed_partition(stream_id, partitions)


# Every append asks twice (its lane, its writer's check) and every publish again: the same few
# thousand live streams each time, and the hash was a twentieth of an appending process's CPU.
@functools.lru_cache(maxsize=65_536)
def _hashed_partition(stream_id: str, partitions: int) -> int:
    digest = hashlib.md5(durable_stream(stream_id).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % partitions


def check_partition(partition: int, partitions: int) -> None:
    """ValidationFailed unless a log of `partitions` has `partition`: what a reader asking for one
    partition (an auditor's `/events`, a one-partition rebuild) is told."""
    if not 0 <= partition < partitions:
        raise ValidationFailed(f"partition must be 0 to {partitions - 1}: this log has {partitions}")


def partition_runs(items: Sequence[NewEvent], partitions: int) -> list[tuple[int, list[NewEvent]]]:
    """The items cut into runs of consecutive items in one partition, in order."""
    runs: list[tuple[int, list[NewEvent]]] = []
    for item in items:
        partition = partition_of(item.stream_id, partitions)
        if runs and runs[-1][0] == partition:
            runs[-1][1].append(item)
        else:
            runs.append((partition, [item]))
    return runs


async def partition_count(conn: AsyncConnection) -> int:
    """How many partitions the log has: one `log_head` row each."""
    return int((await conn.execute(text("SELECT count(*) FROM log_head"))).scalar_one())


async def read_head(conn: AsyncConnection, partition: int = 0) -> int:
    """The partition's newest committed position (0 while it is empty)."""
    found = await conn.execute(text("SELECT position FROM log_head WHERE partition = :p"), {"p": partition})
    return int(found.scalar_one())


async def read_heads(conn: AsyncConnection) -> dict[int, int]:
    """Every partition's newest committed position, in one read."""
    return {int(p): int(h) for p, h in await conn.execute(text("SELECT partition, position FROM log_head"))}


async def create_partitions(conn: AsyncConnection, partitions: int) -> None:
    """Give an empty log `partitions` heads (it has one when migrated). Refused once anything was
    appended: the partition of every stream written so far would change."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"a log has 1 to {MAX_PARTITIONS} partitions, not {partitions}")
    # Locked: an append committing meanwhile would hash its streams under the old count.
    heads = await conn.execute(text("SELECT partition, position FROM log_head ORDER BY partition FOR UPDATE"))
    rows = heads.all()
    if any(position for _, position in rows) or len(rows) != 1:
        raise ValueError("partitions are fixed when a log is created: this log already has events or heads")
    await conn.execute(
        text(
            "INSERT INTO log_head (partition, position, log_id) "
            "SELECT p, 0, (SELECT log_id FROM log_head WHERE partition = 0) FROM generate_series(1, :last) p"
        ),
        {"last": partitions - 1},
    )


async def ensure_partitions(database_url: str, partitions: int) -> int:
    """Give the log `partitions` heads if it is new (one head, nothing appended, no node running on
    it); how many it has. A log that has events keeps the count it was created with, and so does an
    empty one that nodes already serve (they hold its count). Safe when several nodes start at once:
    the table lock makes the second see the heads the first added."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"a log has 1 to {MAX_PARTITIONS} partitions, not {partitions}")
    # It may hold the head table's lock, which every append waits for: not past its host's vanishing.
    settings = session_settings(vanish_within=UNATTACHED_VANISH_WITHIN)
    db_engine = create_async_engine(database_url, connect_args={"server_settings": settings})
    try:
        async with db_engine.begin() as conn:
            # A count once split never changes: only a log of one asked for more takes the lock, which
            # holds appends while it is held.
            count = await partition_count(conn)
            if partitions == 1 or count != 1:
                return count
            # A row lock would not do: a statement that waited on it still misses rows inserted since.
            await conn.execute(text("LOCK TABLE log_head IN SHARE ROW EXCLUSIVE MODE"))
            heads = await conn.execute(text("SELECT position FROM log_head ORDER BY partition"))
            positions = heads.scalars().all()
            if len(positions) != 1 or positions[0]:
                return len(positions)
            if (await conn.execute(text(NODES_RUNNING))).scalar():
                log.warning(
                    "LOG_PARTITIONS=%d not applied: nodes already serve this log as a log of one",
                    partitions,
                )
                return 1
            await create_partitions(conn, partitions)
            return partitions
    finally:
        await db_engine.dispose()
