"""The group-commit appender against a real PostgreSQL, including a real network fault."""

from __future__ import annotations

import asyncio

import pytest

from engine.log.appender import Appender
from engine.log.store import EventStore, create_db_engine
from engine.model.errors import StoreUnavailable
from engine.model.events import Committed, Conflict, Duplicate, NewEvent
from tests.fault_proxy import FaultProxy


async def test_concurrent_appends_share_commits_and_each_gets_its_outcome(
    store: EventStore, stream: str
) -> None:
    appender = Appender(store, max_batch=100)
    await appender.start()
    try:
        outcomes = await asyncio.gather(
            *(appender.append(NewEvent(f"{stream}:{i % 4}", "Probed", {"i": i})) for i in range(400))
        )
    finally:
        await appender.stop()
    assert all(isinstance(o, Committed) for o in outcomes)
    assert len({o.position for o in outcomes}) == 400  # type: ignore[union-attr]
    assert appender.stats.events == 400
    assert appender.stats.batches < 400, "appends were not grouped into shared commits"
    assert appender.stats.batch_size.count == appender.stats.batches
    assert appender.stats.commit_latency_ms.count == appender.stats.batches
    for i in range(4):
        versions = [e.stream_version for e in await store.read_stream(f"{stream}:{i}")]
        assert versions == list(range(1, 101))


async def test_one_conflicting_item_does_not_fail_its_batch_neighbours(
    store: EventStore, stream: str
) -> None:
    appender = Appender(store)
    await appender.start()
    try:
        results = await asyncio.gather(
            appender.append(NewEvent(stream, "A", {}, expected_version=0)),
            appender.append(NewEvent(stream, "B", {}, expected_version=0)),
            appender.append(NewEvent(stream, "C", {}, user_id="u", idempotency_key=f"{stream}-k")),
            appender.append(NewEvent(stream, "D", {}, user_id="u", idempotency_key=f"{stream}-k")),
        )
    finally:
        await appender.stop()
    assert [type(r) for r in results] == [Committed, Conflict, Committed, Duplicate]
    assert [e.type for e in await store.read_stream(stream)] == ["A", "C"]


async def test_poisoned_item_fails_alone(store: EventStore, stream: str) -> None:
    appender = Appender(store)
    await appender.start()
    try:
        good, bad = await asyncio.gather(
            appender.append(NewEvent(stream, "Good", {"ok": True})),
            appender.append(NewEvent(stream, "Bad", {"not json": object()})),
            return_exceptions=True,
        )
    finally:
        await appender.stop()
    assert isinstance(good, Committed)
    assert isinstance(bad, TypeError)
    assert [e.type for e in await store.read_stream(stream)] == ["Good"]


async def test_stop_commits_what_was_queued_and_then_refuses(store: EventStore, stream: str) -> None:
    appender = Appender(store)
    await appender.start()
    pending = [asyncio.create_task(appender.append(NewEvent(stream, "Late", {"i": i}))) for i in range(50)]
    await asyncio.sleep(0)
    await appender.stop()
    assert all(isinstance(o, Committed) for o in await asyncio.gather(*pending))
    assert len(await store.read_stream(stream)) == 50
    with pytest.raises(StoreUnavailable):
        await appender.append(NewEvent(stream, "TooLate", {}))


async def test_unreachable_database_fails_fast_then_recovers(
    database_url: str, store: EventStore, stream: str
) -> None:
    proxy = FaultProxy(database_url)
    await proxy.start()
    db_engine = create_db_engine(proxy.url, command_timeout=2.0)
    appender = Appender(EventStore(db_engine), timeout=3.0)
    await appender.start()
    try:
        before = await appender.append(NewEvent(stream, "Before", {}))
        assert isinstance(before, Committed)

        await proxy.cut()
        # A hang guard: the caller must get an answer (an error), not wait forever.
        async with asyncio.timeout(30):
            with pytest.raises(StoreUnavailable):
                await appender.append(NewEvent(stream, "During", {}))

        await proxy.restore()
        after = None
        for _ in range(50):  # the pool reconnects by itself; no restart of the appender
            try:
                after = await appender.append(NewEvent(stream, "After", {}))
                break
            except StoreUnavailable:
                await asyncio.sleep(0.1)
        assert isinstance(after, Committed)
    finally:
        await appender.stop()
        await db_engine.dispose()
        await proxy.cut()
    types = [e.type for e in await store.read_stream(stream)]
    assert types[0] == "Before" and types[-1] == "After" and "During" not in types


async def test_every_commit_is_told_once_in_position_order_even_if_its_caller_is_gone(
    store: EventStore, stream: str
) -> None:
    """What a node sends to its peers: each committed event once, before its caller resumes, whether
    or not that caller is still there; a repeat (Duplicate) is not a commit."""
    told: list[tuple[str, int]] = []
    appender = Appender(
        store, on_committed=lambda event, outcome: told.append((event.data["k"], outcome.position))
    )
    await appender.start()
    try:
        first = await appender.append(
            NewEvent(stream, "Told", {"k": "a"}, user_id="u", idempotency_key=f"{stream}-a")
        )
        await appender.append(
            NewEvent(stream, "Told", {"k": "a"}, user_id="u", idempotency_key=f"{stream}-a")
        )
        callers = [
            asyncio.create_task(appender.append(NewEvent(stream, "Told", {"k": f"b{i}"}))) for i in range(20)
        ]
        await asyncio.sleep(0)  # queued: the writer takes them, then the callers are cancelled
        outcomes = await asyncio.gather(*callers[:10])
        for caller in callers[10:]:
            caller.cancel()
        await asyncio.gather(*callers[10:], return_exceptions=True)
    finally:
        await appender.stop()
    assert isinstance(first, Committed)
    assert [key for key, _ in told][:1] == ["a"] and [key for key, _ in told].count("a") == 1
    positions = [position for _, position in told]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    committed = {e.position for e in await store.read_stream(stream)}
    assert set(positions) == committed  # told exactly what the log holds, cancelled callers included
    assert {o.position for o in outcomes} <= set(positions)  # type: ignore[union-attr]
