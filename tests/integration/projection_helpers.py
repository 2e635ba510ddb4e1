"""Helpers for tests of the projection tables: a database of a test's own (so whole tables can be
compared), the runner's checkpoint, waiting for it to reach the log head, and reading tables."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.log.embedded_postgres import database_url_for
from engine.log.migrate import upgrade_to_head
from engine.log.store import EventStore
from engine.readmodels.rows import TABLES
from engine.readmodels.runner import CHECKPOINT
from tests.conftest import LOG_PARTITIONS, admin_execute

CATCH_UP_TIMEOUT = 10.0


@contextmanager
def fresh_database(server_url: str, partitions: int = LOG_PARTITIONS) -> Iterator[str]:
    """A new database migrated to head, its log in `partitions` partitions, dropped afterwards. Call
    it outside a running event loop."""
    name = f"collab_projections_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = database_url_for(server_url, name)
    try:
        upgrade_to_head(url, partitions)
        yield url
    finally:
        asyncio.run(admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def checkpoints(db_engine: AsyncEngine) -> dict[int, int]:
    """The runner's checkpoint in each partition it has folded."""
    async with db_engine.connect() as conn:
        found = await conn.execute(
            text("SELECT partition, position FROM projector_checkpoints WHERE name = :n"), {"n": CHECKPOINT}
        )
        return {int(partition): int(position) for partition, position in found}


async def checkpoint(db_engine: AsyncEngine) -> int:
    """The events the runner has folded: its checkpoint in a log of one partition, the sum of the
    partitions' checkpoints in a log of several (positions are gapless in each)."""
    return sum((await checkpoints(db_engine)).values())


async def caught_up(db_engine: AsyncEngine) -> int:
    """`checkpoint` once every partition's has reached its head as it is now (fails after
    CATCH_UP_TIMEOUT)."""
    heads = await EventStore(db_engine).heads()
    async with asyncio.timeout(CATCH_UP_TIMEOUT):
        while True:
            reached = await checkpoints(db_engine)
            if all(reached.get(partition, 0) >= head for partition, head in heads.items()):
                return sum(reached.values())
            await asyncio.sleep(0.02)


async def rows(db_engine: AsyncEngine, table: str, order: str) -> list[dict[str, Any]]:
    async with db_engine.connect() as conn:
        found = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
        return [dict(row) for row in found.mappings()]


async def all_tables(db_engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every projection table (and cells, sheets), each in primary-key order."""
    keys = {table.name: ", ".join(table.key) for table in TABLES}
    keys |= {"cells": "sheet_id, cell_id", "sheets": "sheet_id"}
    return {name: await rows(db_engine, name, order) for name, order in keys.items()}
