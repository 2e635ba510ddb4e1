"""The event log contract: every test here runs against the PostgreSQL store and the memory store,
which must give the same outcomes for the same batches."""

from __future__ import annotations

import pytest

from engine.log.memory import MemoryEventStore
from engine.log.store import EventLog, EventStore


@pytest.fixture(params=["postgres", "memory"])
def event_log(request: pytest.FixtureRequest) -> EventLog:
    if request.param == "memory":
        return MemoryEventStore()
    store: EventStore = request.getfixturevalue("one_partition_store")
    return store
