"""A node that does not know where its log starts (the database was away at start) must not let the
first bus message decide it: earlier positions may still be on their way from other nodes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine.cluster.follower import LogFollower
from engine.fanout.delivery_order import DeliveryOrder
from tests.unit.test_delivery_order import event


def follower(order: DeliveryOrder) -> LogFollower:
    registry: Any = SimpleNamespace(node_id="n1")
    return LogFollower(store=None, order=order, dsn="", registry=registry)  # type: ignore[arg-type]


def test_bus_events_wait_until_the_start_is_known_then_go_out_in_order() -> None:
    published: list[int] = []
    order = DeliveryOrder(lambda e: published.append(e.position), delivered=None)
    f = follower(order)
    f._on_bus_events([event(7)])
    assert published == [] and order.delivered is None  # not taken as the start
    assert f._wake.is_set()  # the read loop learns the head, then repairs what this held
    order.start_at(5)
    f._on_bus_events([event(7)])
    assert published == [] and order.highest_held == 7
    f._on_bus_events([event(6)])
    assert published == [6, 7] and order.highest_held is None


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
