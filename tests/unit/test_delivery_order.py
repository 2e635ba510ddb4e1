"""DeliveryOrder publishes in position order whichever side offers first, holds what comes early,
and never publishes a position twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from engine.fanout.delivery_order import DeliveryOrder
from engine.model.events import RecordedEvent


def event(position: int, stream: str = "room:r", partition: int = 0) -> RecordedEvent:
    return RecordedEvent(
        partition=partition,
        position=position,
        stream_id=stream,
        stream_version=position,
        type="CellUpdated",
        data={},
        metadata={},
        recorded_at=datetime(2026, 11, 26, tzinfo=UTC),
    )


def test_the_next_position_is_published_at_once() -> None:
    published: list[int] = []
    order = DeliveryOrder(lambda e: published.append(e.position), delivered=10)
    assert order.offer(event(11))
    assert order.offer(event(12))
    assert published == [11, 12]
    assert order.delivered == 12


def test_an_early_position_is_held_until_the_gap_is_read_then_published_in_order() -> None:
    published: list[int] = []
    gaps: list[int] = []
    order = DeliveryOrder(lambda e: published.append(e.position), delivered=0, on_gap=lambda: gaps.append(1))
    assert not order.offer(event(3))  # another node wrote 1 and 2
    assert published == [] and order.held == 1 and gaps == [1]
    order.offer_all([event(1), event(2), event(3)])  # the follower's read includes 3 as well
    assert published == [1, 2, 3]
    assert order.held == 0


def test_a_position_offered_twice_is_published_once() -> None:
    published: list[int] = []
    order = DeliveryOrder(lambda e: published.append(e.position), delivered=0)
    order.offer_all([event(1), event(2)])
    assert order.offer(event(2))  # the committer arrives after the follower published it
    assert published == [1, 2]


def test_a_failing_publish_skips_that_event_and_keeps_the_order_going() -> None:
    published: list[int] = []

    def publish(e: RecordedEvent) -> None:
        if e.position == 2:
            raise ValueError("not a stream this node fans out")
        published.append(e.position)

    order = DeliveryOrder(publish, delivered=0)
    order.offer_all([event(1), event(2), event(3)])
    assert published == [1, 3]
    assert order.delivered == 3


async def test_a_waiting_committer_resumes_once_its_position_is_published() -> None:
    order = DeliveryOrder(lambda e: None, delivered=0)
    assert not order.offer(event(2))
    waiter = asyncio.create_task(order.wait_delivered(2))
    await asyncio.sleep(0)
    assert not waiter.done()
    order.offer(event(1))
    async with asyncio.timeout(1):
        await waiter
    assert order.delivered == 2


async def test_a_wait_ends_when_a_starting_point_at_or_past_its_position_becomes_known() -> None:
    """A node that started while the database was away learns where its partitions stand later: a
    reply waiting for a position the head already covers goes then, not at the next event."""
    order = DeliveryOrder(lambda e: None, delivered=None)
    waiter = asyncio.create_task(order.wait_delivered(5))
    await asyncio.sleep(0)
    assert not waiter.done()
    order.start_at(7)
    async with asyncio.timeout(1):
        await waiter
    assert order.delivered == 7
