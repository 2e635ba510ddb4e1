"""`subscribe_notifications` retried with the same `client_msg_id`: from the connection that sent it,
the original answer; from another connection (the first one dropped), a subscription of its own, so
that every notification is still either in `unread` or delivered live, and read ones are not unread."""

from __future__ import annotations

import asyncio

from engine.features.limits import RateLimits
from engine.model.catalogue import NOTIFICATIONS_SUBSCRIBED
from engine.model.streams import user_stream
from tests.engine.memory_engine import connect, memory_engine, settle


async def test_a_retry_from_a_new_connection_lists_what_was_created_and_read_since() -> None:
    async with memory_engine() as engine:
        await engine.create_notification("ann", {"id": "n0", "title": "old"}, created_by="root")
        first = await connect(engine, "ann")
        await first.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        first.take()
        await first.send({"type": "notification_read", "notification_id": "n0"})
        await first.session.end()  # before its reply was read, say
        await engine.create_notification("ann", {"id": "n1", "title": "while away"}, created_by="root")
        await settle(engine)
        second = await connect(engine, "ann")
        await second.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        subscribed, ack = second.take()
        assert [n["id"] for n in subscribed["unread"]] == ["n1"]
        assert ack == {"type": "ack", "client_msg_id": "sub-1", "seq": subscribed["seq"]}
        await engine.create_notification("ann", {"id": "n2", "title": "later"}, created_by="root")
        await settle(engine)
        assert [m["notification"]["id"] for m in second.take()] == ["n2"]


async def test_a_retry_from_the_same_connection_is_answered_as_the_original() -> None:
    async with memory_engine() as engine:
        ann = await connect(engine, "ann")
        await ann.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        original, _ = ann.take()
        await ann.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        again, ack = ann.take()
        assert again["seq"] == original["seq"] and ack["seq"] == original["seq"]
        stream = await engine.store.read_stream(user_stream("ann"))
        assert [e.type for e in stream].count(NOTIFICATIONS_SUBSCRIBED) == 1


async def test_a_retry_repeated_on_the_new_connection_is_its_subscription_s_repeat() -> None:
    async with memory_engine() as engine:
        first = await connect(engine, "ann")
        await first.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        await first.session.end()
        second = await connect(engine, "ann")
        await second.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        _, ack = second.take()
        await second.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        _, again = second.take()
        assert again == ack
        stream = await engine.store.read_stream(user_stream("ann"))
        assert [e.type for e in stream].count(NOTIFICATIONS_SUBSCRIBED) == 2


async def test_past_a_rate_limit_a_retry_is_acked_on_its_connection_and_refused_on_another() -> None:
    """A new connection's retry is a subscription of its own: acked without one, it would wait for
    notifications that never come."""
    async with memory_engine(rate_limits=RateLimits(per_minute=1, per_hour=100, block_seconds=60)) as engine:
        first = await connect(engine, "ann")
        await first.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        _, ack = first.take()
        await first.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        assert first.take() == [ack]
        second = await connect(engine, "ann")
        await second.send({"type": "subscribe_notifications", "client_msg_id": "sub-1"})
        assert [(m["type"], m.get("code")) for m in second.take()] == [("error", "RATE_LIMIT_EXCEEDED")]


async def test_a_connection_that_ends_while_its_subscription_commits_keeps_no_filters() -> None:
    async with memory_engine() as engine:
        ann = await connect(engine, "ann")
        committing = asyncio.create_task(ann.send({"type": "subscribe_notifications", "client_msg_id": "s"}))
        for _ in range(1000):  # until the subscription is in the log, its reply not yet sent
            if await engine.store.read_stream(user_stream("ann")):
                break
            await asyncio.sleep(0)
        assert not committing.done()
        await ann.session.end()
        await committing
        assert ann.connection_id not in engine.notifications.filters
