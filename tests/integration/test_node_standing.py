"""Where a node stands among the live nodes when they share out the log's partitions: the oldest
first, by the `started_at` of their rows, whatever their ids; a node that stops drops out."""

from __future__ import annotations

import asyncio

from engine.cluster.registry import NodeRegistry
from engine.log.partition_locks import Standing
from engine.log.store import create_db_engine
from tests.api.conftest import fresh_database

HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check


async def until_standing(registry: NodeRegistry, expected: Standing) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while registry.standing() != expected:  # noqa: ASYNC110 (the heartbeat task refreshes it)
            await asyncio.sleep(0.02)


async def test_the_oldest_node_stands_first_whatever_its_id(server_url: str) -> None:
    async with fresh_database(server_url, 1) as url:
        db = create_db_engine(url)
        older = NodeRegistry(db, "node-z", interval=0.05, dead_after=5.0)
        newer = NodeRegistry(db, "node-a", interval=0.05, dead_after=5.0)
        try:
            await older.start()
            await until_standing(older, Standing(0, 1))
            await newer.start()
            # Sorted by id, node-a would come first and take node-z's extra partitions.
            await until_standing(older, Standing(0, 2))
            await until_standing(newer, Standing(1, 2))
            await older.stop()
            await until_standing(newer, Standing(0, 1))
        finally:
            await newer.stop()
            await older.stop()
            await db.dispose()
