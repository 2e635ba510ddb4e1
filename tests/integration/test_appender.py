"""The group-commit appender against a real PostgreSQL, including a real network fault."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.log.appender import HANDED_OVER_TOO_LONG_AGO, REFUSED_UNVOUCHED, Appender
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
    assert len({(o.partition, o.position) for o in outcomes}) == 400  # type: ignore[union-attr]
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


class GatedStore:
    """The real store, whose writer waits at a gate before each commit: a test can act while a batch
    is in flight."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def partitions(self) -> int:
        return await self._store.partitions()

    def writer(self, partition: int = 0, partitions: int = 1) -> Any:
        inner, outer = self._store.writer(partition, partitions), self

        class Gated:
            paths = inner.paths

            async def append(self, items: Any) -> Any:
                outer.entered.set()
                await outer.gate.wait()
                return await inner.append(items)

            async def close(self) -> None:
                await inner.close()

        return Gated()


async def test_every_commit_is_told_once_in_position_order_even_if_its_caller_is_gone(
    store: EventStore, stream: str
) -> None:
    """What a node sends to its peers: each committed event once, in the writer task, whether or not
    its caller is still there when the commit returns; a repeat (Duplicate) is not a commit."""
    told: list[tuple[str, int]] = []
    gated = GatedStore(store)
    appender = Appender(gated, on_committed=lambda e, outcome: told.append((e.data["k"], outcome.position)))  # type: ignore[arg-type]
    await appender.start()
    try:
        gated.gate.set()
        key = f"{stream}-a"
        first = await appender.append(NewEvent(stream, "Told", {"k": "a"}, user_id="u", idempotency_key=key))
        again = await appender.append(NewEvent(stream, "Told", {"k": "a"}, user_id="u", idempotency_key=key))
        gated.gate.clear()
        gated.entered.clear()
        callers = [
            asyncio.create_task(appender.append(NewEvent(stream, "Told", {"k": f"b{i}"}))) for i in range(10)
        ]
        await gated.entered.wait()  # the batch is taken and its commit is in flight
        for caller in callers[5:]:
            caller.cancel()  # these callers are gone before their commit returns
        gated.gate.set()
        await asyncio.gather(*callers, return_exceptions=True)
    finally:
        await appender.stop()
    assert isinstance(first, Committed) and isinstance(again, Duplicate)
    assert all(c.cancelled() for c in callers[5:])
    assert [k for k, _ in told] == ["a"] + [f"b{i}" for i in range(10)]  # the cancelled five included
    positions = [p for _, p in told]
    assert positions == sorted(positions)
    assert positions == [e.position for e in await store.read_stream(stream)]  # exactly what the log holds


async def test_a_full_queue_refuses_until_its_events_are_taken(store: EventStore, stream: str) -> None:
    """`max_queue` bounds the events waiting in every partition's queue; what a commit takes, or a
    caller gave up on, leaves it."""
    gated = GatedStore(store)
    appender = Appender(gated, max_queue=3)  # type: ignore[arg-type]
    await appender.start()
    try:
        in_flight = asyncio.create_task(appender.append(NewEvent(stream, "First", {})))
        await gated.entered.wait()  # taken from the queue: its commit waits at the gate
        assert appender.queue_depth == 0
        queued: list[asyncio.Task[Any]] = [
            asyncio.create_task(appender.append(NewEvent(stream, "Queued", {"i": i}))) for i in range(2)
        ]
        queued.append(asyncio.create_task(appender.append_many([NewEvent(stream, "Queued", {"i": 2})])))
        await asyncio.sleep(0)
        assert appender.queue_depth == 3
        with pytest.raises(StoreUnavailable, match="queue is full"):
            await appender.append(NewEvent(stream, "Refused", {}))
        queued[2].cancel()  # a caller gone: its event stays queued until a batch skips it
        gated.gate.set()
        outcomes = await asyncio.gather(in_flight, *queued[:2])
        assert appender.queue_depth == 0
        assert isinstance(await appender.append(NewEvent(stream, "Admitted", {})), Committed)
    finally:
        gated.gate.set()
        await appender.stop()
    assert all(isinstance(o, Committed) for o in outcomes)
    assert [e.type for e in await store.read_stream(stream)] == ["First", "Queued", "Queued", "Admitted"]


async def test_a_start_during_a_stop_waits_for_its_lanes_to_drain(store: EventStore, stream: str) -> None:
    """A stop commits what was queued; a start meanwhile waits for that, so the old lanes end and
    their events leave the queue count, then appends are taken again."""
    gated = GatedStore(store)
    appender = Appender(gated, max_batch=1, max_queue=10, partitions=await store.partitions())  # type: ignore[arg-type]
    await appender.start()
    callers = [asyncio.create_task(appender.append(NewEvent(stream, "Old", {"i": i}))) for i in range(4)]
    try:
        await gated.entered.wait()  # one taken, three queued
        stopping = asyncio.create_task(appender.stop())
        restarting = asyncio.create_task(appender.start())
        await asyncio.sleep(0.05)
        assert not restarting.done() and appender.queue_depth == 3
        with pytest.raises(StoreUnavailable, match="not running"):
            await appender.append(NewEvent(stream, "Refused", {}))
        gated.gate.set()
        await asyncio.wait_for(asyncio.gather(stopping, restarting, *callers), 10)
        assert appender.queue_depth == 0
        assert isinstance(await appender.append(NewEvent(stream, "New", {})), Committed)
    finally:
        gated.gate.set()
        await asyncio.gather(*callers, return_exceptions=True)
        await asyncio.wait_for(appender.stop(), 10)  # a lane that never ends fails the test, not the run
    assert [e.type for e in await store.read_stream(stream)] == ["Old"] * 4 + ["New"]


async def test_an_event_its_node_may_no_longer_vouch_for_is_refused_as_its_batch_leaves(
    store: EventStore, stream: str
) -> None:
    """`admits` is asked when the batch leaves the queue, not when its events were queued: a node
    that may be counted dead by then (engine/node.py) writes and hands over nothing more."""
    vouching = True
    appender = Appender(store, admits=lambda event: vouching or event.type == "Departed")
    await appender.start()
    try:
        assert isinstance(await appender.append(NewEvent(stream, "Edited", {})), Committed)
        queued = [appender.append(NewEvent(stream, kind, {})) for kind in ("Edited", "Departed")]
        vouching = False  # before the writer gets to them
        edited, departed = await asyncio.gather(*queued, return_exceptions=True)
    finally:
        await appender.stop()
    assert isinstance(edited, StoreUnavailable) and str(edited) == REFUSED_UNVOUCHED
    assert isinstance(departed, Committed)
    assert [e.type for e in await store.read_stream(stream)] == ["Edited", "Departed"]


async def test_a_batch_handed_over_that_waited_past_its_bound_is_not_written(
    store: EventStore, stream: str
) -> None:
    """Its asker counts on it being written within the append timeout of its queueing, or never (and
    so does a survivor's second look at a dead node's joins): one that waited longer fails."""
    appender = Appender(store, timeout=0.2)
    await appender.start()
    try:
        await appender.append(NewEvent(stream, "First", {}))  # the log's partition count known
        handed = appender.submit_many([NewEvent(stream, "HandedOver", {"i": i}) for i in range(3)], here=True)
        assert handed is not None
        own = asyncio.ensure_future(appender.append(NewEvent(stream, "Own", {})))
        time.sleep(0.3)  # noqa: ASYNC251 (the loop stalls with them queued: the writer comes too late)
        outcomes = await asyncio.gather(*handed, return_exceptions=True)
        assert isinstance(await own, Committed)  # this node's own caller's event is not bounded so
    finally:
        await appender.stop()
    assert all(isinstance(o, StoreUnavailable) and str(o) == HANDED_OVER_TOO_LONG_AGO for o in outcomes)
    assert [e.type for e in await store.read_stream(stream)] == ["First", "Own"]
