"""A node that does not know where its log starts (the database was away at start) must not let the
first bus message decide it: earlier positions may still be on their way from other nodes."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

from engine.cluster.follower import LogFollower
from engine.fanout.delivery_order import DeliveryOrder, DeliveryOrders
from engine.model.events import RecordedEvent
from tests.unit.test_delivery_order import event


def follower(orders: DeliveryOrders) -> LogFollower:
    registry: Any = SimpleNamespace(node_id="n1")
    return LogFollower(store=None, orders=orders, dsn="", registry=registry)  # type: ignore[arg-type]


def test_bus_events_wait_until_the_start_is_known_then_go_out_in_order() -> None:
    published: list[int] = []
    orders = DeliveryOrders(lambda e: published.append(e.position), heads=None)
    f = follower(orders)
    f.offer_peers_events([event(7)])
    assert published == [] and orders.of(0).delivered is None  # not taken as the start
    assert f._wake.is_set()  # the read loop learns the heads, then repairs what this held
    orders.start_at({0: 5})
    f.offer_peers_events([event(7)])
    assert published == [] and orders.of(0).highest_held == 7
    f.offer_peers_events([event(6)])
    assert published == [6, 7] and orders.of(0).highest_held is None


def test_each_partition_goes_out_in_its_own_order_and_a_gap_holds_back_only_its_own() -> None:
    published: list[tuple[int, int]] = []
    orders = DeliveryOrders(lambda e: published.append((e.partition, e.position)), heads={0: 0, 1: 10})
    f = follower(orders)
    f.offer_peers_events([event(2, partition=0), event(11, partition=1), event(1, partition=0)])
    assert published == [(1, 11), (0, 1), (0, 2)]
    f.offer_peers_events([event(13, partition=1), event(3, partition=0)])  # 12 of partition 1 is missing
    assert published[3:] == [(0, 3)] and orders.of(1).highest_held == 13 and orders.held == 1
    f.offer_peers_events([event(12, partition=1)])
    assert published[4:] == [(1, 12), (1, 13)] and orders.held == 0
    assert orders.delivered == {0: 3, 1: 13}


def test_the_highest_held_position_is_kept_as_positions_are_released() -> None:
    order = DeliveryOrder(lambda e: None, delivered=0)
    for position in (3, 9, 5):
        order.offer(event(position))
    assert order.highest_held == 9
    order.offer_all([event(1), event(2)])  # releases 3
    assert order.held == 2 and order.highest_held == 9
    order.offer(event(4))  # releases 5 too
    assert order.highest_held == 9
    order.offer_all([event(6), event(7), event(8)])  # and 9
    assert order.held == 0 and order.highest_held is None
    order.offer(event(12))  # a new gap starts from nothing
    assert order.highest_held == 12


class PartitionedLog:
    """The reads a follower makes, over events kept per partition; `fail_next` fails one range read."""

    def __init__(self, partitions: int) -> None:
        self.events: dict[int, list[RecordedEvent]] = {p: [] for p in range(partitions)}
        self.range_reads: list[int] = []  # the partition of each range read
        self.fail_next = False

    def commit(self, partition: int) -> None:
        self.events[partition].append(event(len(self.events[partition]) + 1, partition=partition))

    async def heads(self) -> dict[int, int]:
        return {p: len(found) for p, found in self.events.items()}

    async def read_all(self, after: int = 0, limit: int = 1000, partition: int = 0) -> list[RecordedEvent]:
        self.range_reads.append(partition)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionResetError("the read's connection broke")
        return self.events[partition][after : after + limit]


def notify_follower(store: PartitionedLog, published: list[tuple[int, int]], **options: Any) -> LogFollower:
    registry: Any = SimpleNamespace(node_id="n1", saw=lambda _node: None)
    orders = DeliveryOrders(
        lambda e: published.append((e.partition, e.position)), heads={p: 0 for p in store.events}
    )
    return LogFollower(store=store, orders=orders, dsn="", registry=registry, **options)  # type: ignore[arg-type]


async def test_a_notification_reads_the_partitions_it_names_and_an_old_one_means_partition_0() -> None:
    store = PartitionedLog(4)
    published: list[tuple[int, int]] = []
    f = notify_follower(store, published)
    await f._catch_up(poll=True)  # the start: every head read, nothing behind
    for partition in (0, 1, 2, 3):
        store.commit(partition)
    f._on_notification(None, 0, "collab_log", "commit n2 1,2")
    await f._catch_up(poll=False)
    assert store.range_reads == [1, 2] and published == [(1, 1), (2, 1)]
    f._on_notification(None, 0, "collab_log", "commit n2")  # a node of the version before
    await f._catch_up(poll=False)
    assert store.range_reads[2:] == [0] and published[2:] == [(0, 1)]
    f._on_notification(None, 0, "collab_log", "commit n1 3")  # its own: ignored
    await f._catch_up(poll=False)
    assert store.range_reads[3:] == []
    await f._catch_up(poll=True)  # the poll finds partition 3 behind its head, and only it
    assert store.range_reads[3:] == [3] and published[3:] == [(3, 1)]


async def test_steady_notifications_do_not_stop_the_poll_and_a_failed_read_is_read_again() -> None:
    """A commit never announced (its NOTIFY failed) is found by the poll though notifications keep
    waking the reader; a read that fails after its announcement was taken is not forgotten."""
    store = PartitionedLog(4)
    published: list[tuple[int, int]] = []
    f = notify_follower(store, published, poll_interval=0.1, retry_interval=0.01)
    loop = asyncio.create_task(f._read_loop())
    try:
        store.commit(3)  # announced to nobody
        store.commit(1)
        store.fail_next = True  # the read of partition 1 fails once
        async with asyncio.timeout(5):
            while {(3, 1), (1, 1)} - set(published):
                store.commit(0)
                f._on_notification(None, 0, "collab_log", "commit n2 0")
                await asyncio.sleep(0.01)  # a wake every 10 ms: never 0.1 s without one
            f._on_notification(None, 0, "collab_log", "commit n2 1")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    for partition in (0, 1, 3):
        positions = [p for q, p in published if q == partition]
        assert positions == list(range(1, len(positions) + 1))  # each partition once, in order
