"""Fixtures of the integration tests that read the log directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.log import migrate
from tests.conftest import LOG_PARTITIONS


@pytest.fixture
async def log_engine(empty_database: str) -> AsyncIterator[AsyncEngine]:
    """A fresh log of the suite's partition count, and an engine on it."""
    await asyncio.to_thread(migrate.upgrade_to_head, empty_database, LOG_PARTITIONS)
    db_engine = create_async_engine(empty_database)
    yield db_engine
    await db_engine.dispose()
