"""Cross-node delivery on a real NATS (a server of the test's own) and the real PostgreSQL.

Writers append concurrently, as nodes do, and publish what they committed on the bus; a follower
publishes every event once, in position order within its partition, and reads the log only to repair
what the bus lost: messages dropped on the way, a bus outage, a bus that was never there. Each test
runs on a log of one partition and on a log of four.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from nats.aio.msg import Msg

from engine.cluster.bus import NatsBus, log_subject
from engine.cluster.follower import LogFollower
from engine.cluster.registry import NodeRegistry
from engine.fanout.delivery_order import DeliveryOrders
from engine.fanout.live import recorded
from engine.log.store import EventStore, create_db_engine, libpq_dsn
from engine.model.events import Committed, NewEvent, RecordedEvent
from tests.api.conftest import fresh_database
from tests.nats_server import NatsServer, nats_server

WRITERS = 2
HANG_GUARD = 30.0  # bounds a wait that would otherwise hang; not a speed check
Written = list[tuple[int, int]]  # (partition, position) of each committed event


class LossyBus(NatsBus):
    """Loses one message in `every` that reaches this node, as a network that drops them would."""

    def __init__(self, *args: Any, every: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every = every
        self.arrived = 0
        self.dropped = 0

    async def _on_message(self, message: Msg) -> None:
        self.arrived += 1
        if self.arrived % self.every == 0:
            self.dropped += 1
            return
        await super()._on_message(message)


@dataclass
class Log:
    database_url: str
    store: EventStore
    subject: str
    db: Any
    partitions: int
    published: list[RecordedEvent] = field(default_factory=list)


@pytest.fixture(params=[1, 4], ids=["one-partition", "four-partitions"])
async def log(request: pytest.FixtureRequest, server_url: str) -> AsyncIterator[Log]:
    partitions: int = request.param
    async with fresh_database(server_url, partitions) as url:
        db = create_db_engine(url, pool_size=partitions + 4)
        try:
            yield Log(url, EventStore(db), await log_subject(db), db, partitions)
        finally:
            await db.dispose()


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    with nats_server() as server:
        yield server


@dataclass
class Follower:
    follower: LogFollower
    orders: DeliveryOrders
    delivered: list[RecordedEvent]
    registry: NodeRegistry


async def start_follower(log: Log, bus: NatsBus) -> Follower:
    delivered: list[RecordedEvent] = []
    registry = NodeRegistry(log.db, f"follower-{uuid.uuid4().hex[:6]}")
    await registry.start()
    holder: list[LogFollower] = []
    orders = DeliveryOrders(delivered.append, await log.store.heads(), on_gap=lambda: holder[0].wake())
    follower = LogFollower(log.store, orders, libpq_dsn(log.database_url), registry, bus=bus)
    holder.append(follower)
    await follower.start()
    return Follower(follower, orders, delivered, registry)


async def stop_follower(f: Follower) -> None:
    await f.follower.stop()
    await f.registry.stop()


async def write(log: Log, bus: NatsBus, count: int, *, pause: float = 0.0) -> Written:
    """Append `count` events one at a time (several writers interleave their positions) and publish
    each committed one on `bus`, as a node does."""
    positions: Written = []
    for i in range(count):
        event = NewEvent(f"room:bus-{random.randrange(8)}", "BusProbe", {"i": i})
        (outcome,) = await log.store.append([event])
        assert isinstance(outcome, Committed)
        bus.publish(recorded(event, outcome))
        positions.append((outcome.partition, outcome.position))
        if pause:
            await asyncio.sleep(pause)
    return positions


async def writers(log: Log, url: str, count: int, **kwargs: Any) -> Written:
    buses = [NatsBus(url, _fixed(log.subject), f"writer-{n}") for n in range(WRITERS)]
    for bus in buses:
        await bus.start(lambda _events: None)
    try:
        written = await asyncio.gather(*(write(log, bus, count, **kwargs) for bus in buses))
        await asyncio.sleep(0.05)  # let the last messages leave before the writers disconnect
    finally:
        for bus in buses:
            await bus.stop()
    return sorted(p for positions in written for p in positions)


def _fixed(subject: str) -> Any:
    async def answer() -> str:
        return subject

    return answer


async def delivered_up_to(f: Follower, written: Written) -> None:
    """Wait until the last of `written` in each partition is published."""
    async with asyncio.timeout(HANG_GUARD):
        for partition, position in dict(sorted(written)).items():
            await f.orders.of(partition).wait_delivered(position)


def assert_once_in_order(f: Follower, written: Written) -> None:
    for partition in {p for p, _ in written}:
        positions = sorted(position for p, position in written if p == partition)
        seen = [e.position for e in f.delivered if e.partition == partition]
        assert seen == positions, f"every event of partition {partition} exactly once, in position order"
        assert positions == list(range(positions[0], positions[0] + len(positions)))  # gapless


async def test_events_travel_on_the_bus_and_the_log_is_read_only_to_repair(
    log: Log, nats: NatsServer
) -> None:
    f = await start_follower(log, NatsBus(nats.url, _fixed(log.subject), "follower"))
    try:
        started = time.monotonic()
        positions = await writers(log, nats.url, 300)
        await delivered_up_to(f, positions)
        polls = (time.monotonic() - started) / f.follower.poll_interval
        assert_once_in_order(f, positions)
        bus = f.follower.bus
        assert bus is not None and bus.events_received >= len(positions) - 10  # late ones may be read
        # Interleaved writers leave short gaps that the bus fills within the grace: no range read,
        # or a few when the machine stalls past the grace; and the heads are polled, not read per wake.
        assert f.follower.reads <= 5 * log.partitions
        assert f.follower.head_reads <= polls + 3  # every gap woke it, yet it polled on time only
        assert {e.data["i"] for e in f.delivered} == set(range(300))
        assert {p for p, _ in positions} == set(range(log.partitions))  # every partition written
    finally:
        await stop_follower(f)


async def test_messages_the_bus_drops_are_read_from_the_log(log: Log, nats: NatsServer) -> None:
    bus = LossyBus(nats.url, _fixed(log.subject), "follower", every=100)  # 1% of messages lost
    f = await start_follower(log, bus)
    try:
        positions = await writers(log, nats.url, 400, pause=0.001)
        await delivered_up_to(f, positions)
        assert_once_in_order(f, positions)
        assert bus.dropped > 0
        # Each loss costs a read (a lost message may carry several events); nothing close to one per event.
        assert 0 < f.follower.reads <= 3 * bus.dropped + 2
    finally:
        await stop_follower(f)


async def test_a_bus_outage_costs_latency_never_an_event(log: Log, nats: NatsServer) -> None:
    f = await start_follower(log, NatsBus(nats.url, _fixed(log.subject), "follower", retry_interval=0.2))
    try:
        before = await writers(log, nats.url, 50)
        await delivered_up_to(f, before)
        nats.stop()
        during = await writers(log, nats.url, 50)  # nothing reaches anyone on the bus now
        await delivered_up_to(f, during)  # the follower's polls of the heads find them
        assert f.follower.head_reads > 0 and f.follower.reads > 0
        nats.start()
        bus = f.follower.bus
        assert bus is not None
        async with asyncio.timeout(HANG_GUARD):
            while not bus.connected:  # noqa: ASYNC110 (the client has no event for it)
                await asyncio.sleep(0.05)
        received = bus.events_received
        reads = f.follower.reads
        after = await writers(log, nats.url, 50)
        await delivered_up_to(f, after)
        assert_once_in_order(f, before + during + after)
        assert bus.events_received > received  # the bus carries events again after its restart
        assert f.follower.reads - reads <= 5 * log.partitions
    finally:
        await stop_follower(f)


async def test_a_bus_that_is_never_there_still_delivers_everything(log: Log) -> None:
    absent = NatsServer()  # a free port nobody listens on
    f = await start_follower(log, NatsBus(absent.url, _fixed(log.subject), "follower", retry_interval=0.2))
    try:
        positions = await writers(log, absent.url, 30)
        await delivered_up_to(f, positions)
        assert_once_in_order(f, positions)
        assert f.follower.bus is not None and not f.follower.bus.connected
    finally:
        await stop_follower(f)


GRACE = 1.0  # how long a node's bus may be away before it stops counting as reachable


async def until_reachable(bus: NatsBus, reachable: bool) -> float:
    """Seconds until `bus.reachable(GRACE)` says `reachable`."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(HANG_GUARD):
        while bus.reachable(GRACE) != reachable:  # noqa: ASYNC110 (the client has no event for it)
            await asyncio.sleep(0.02)
    return loop.time() - began


async def test_a_bus_is_reachable_through_a_blip_and_back_from_a_loss_only_after_a_grace(
    nats: NatsServer,
) -> None:
    """What depends on the bus being reachable (a node's share of the writing) does not move for a
    restart of the bus shorter than the grace, nor back at once after a longer loss."""
    bus = NatsBus(nats.url, _fixed("collab.reach"), "reach", retry_interval=0.2)
    await bus.start(lambda _events: None)
    try:
        assert bus.connected and bus.reachable(GRACE)
        nats.stop()  # and back within a reconnect: never out of reach for the grace
        for back in (False, True):
            async with asyncio.timeout(HANG_GUARD):
                while bus.connected != back:
                    assert bus.reachable(GRACE)
                    await asyncio.sleep(0.02)
            if not back:
                nats.start()
        assert bus.reachable(GRACE)

        nats.stop()
        assert await until_reachable(bus, False) >= GRACE * 0.9
        nats.start()
        async with asyncio.timeout(HANG_GUARD):
            while not bus.connected:  # noqa: ASYNC110 (the client has no event for it)
                await asyncio.sleep(0.02)
        assert not bus.reachable(GRACE)  # connected, but not yet for the grace
        assert await until_reachable(bus, True) >= GRACE * 0.5
    finally:
        await bus.stop()
