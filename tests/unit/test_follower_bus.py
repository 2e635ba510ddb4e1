"""A node that does not know where its log starts (the database was away at start) must not let the
first bus message decide it: earlier positions may still be on their way from other nodes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine.cluster.follower import LogFollower
from engine.fanout.delivery_order import DeliveryOrder, DeliveryOrders
from tests.unit.test_delivery_order import event


def follower(orders: DeliveryOrders) -> LogFollower:
    registry: Any = SimpleNamespace(node_id="n1")
    return LogFollower(store=None, orders=orders, dsn="", registry=registry)  # type: ignore[arg-type]


def test_bus_events_wait_until_the_start_is_known_then_go_out_in_order() -> None:
    published: list[int] = []
    orders = DeliveryOrders(lambda e: published.append(e.position), heads=None)
    f = follower(orders)
    f._on_bus_events([event(7)])
    assert published == [] and orders.of(0).delivered is None  # not taken as the start
    assert f._wake.is_set()  # the read loop learns the heads, then repairs what this held
    orders.start_at({0: 5})
    f._on_bus_events([event(7)])
    assert published == [] and orders.of(0).highest_held == 7
    f._on_bus_events([event(6)])
    assert published == [6, 7] and orders.of(0).highest_held is None


def test_each_partition_goes_out_in_its_own_order_and_a_gap_holds_back_only_its_own() -> None:
    published: list[tuple[int, int]] = []
    orders = DeliveryOrders(lambda e: published.append((e.partition, e.position)), heads={0: 0, 1: 10})
    f = follower(orders)
    f._on_bus_events([event(2, partition=0), event(11, partition=1), event(1, partition=0)])
    assert published == [(1, 11), (0, 1), (0, 2)]
    f._on_bus_events([event(13, partition=1), event(3, partition=0)])  # 12 of partition 1 is missing
    assert published[3:] == [(0, 3)] and orders.of(1).highest_held == 13 and orders.held == 1
    f._on_bus_events([event(12, partition=1)])
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
