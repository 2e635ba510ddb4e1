"""Notifications between real clients: `subscribe_notifications` filters, delivery of a created
notification only where every given filter matches, `notification_read` to all the user's tabs."""

from __future__ import annotations

import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.api.conftest import Server, request
from tests.api.live_helpers import greet, of_type, pending, send, until


def new_user() -> str:
    return f"notif-user-{uuid.uuid4().hex[:8]}"


async def subscribe(ws: ClientConnection, **filters: Any) -> dict[str, Any]:
    reply = await request(ws, {"type": "subscribe_notifications", **filters})
    assert reply["type"] == "notifications_subscribed", reply
    return reply


def notification(nid: str, **fields: Any) -> dict[str, Any]:
    return {"id": nid, "title": f"title {nid}", "message": "hello", **fields}


async def test_subscribe_returns_the_unread_notifications_matching_its_filters(server: Server) -> None:
    user = new_user()
    engine = server.engine
    await engine.create_notification(
        user, notification("n-a", category="system", priority="high"), created_by="test"
    )
    await engine.create_notification(
        user, notification("n-b", category="billing", priority="high"), created_by="test"
    )
    await engine.create_notification(
        user, notification("n-c", category="system", priority="low"), created_by="test"
    )
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        reply = await subscribe(ws, categories=["system"], priorities=["high"])
        assert reply["filters"] == {"categories": ["system"], "modules": None, "priorities": ["high"]}
        assert [n["id"] for n in reply["unread"]] == ["n-a"]
        assert reply["unread"][0] == {
            "id": "n-a",
            "title": "title n-a",
            "message": "hello",
            "category": "system",
            "priority": "high",
            "module_name": None,
        }
        assert isinstance(reply["seq"], int)
        everything = await subscribe(ws)
        assert [n["id"] for n in everything["unread"]] == ["n-a", "n-b", "n-c"]


async def test_created_notification_reaches_only_matching_subscribers_of_that_user(server: Server) -> None:
    user, other = new_user(), new_user()
    engine = server.engine
    async with (
        server.connect(server.token(user)) as matching,
        server.connect(server.token(user)) as filtered_out,
        server.connect(server.token(user)) as unsubscribed,
        server.connect(server.token(other)) as other_user,
    ):
        for ws in (matching, filtered_out, unsubscribed, other_user):
            await greet(ws)
        await subscribe(matching, categories=["system"], modules=["sheets"])
        await subscribe(filtered_out, categories=["system"], modules=["billing"])
        await subscribe(other_user)

        created = await engine.create_notification(
            user, notification("n-1", category="system", module_name="sheets"), created_by="admin-1"
        )
        assert created["id"] == "n-1"
        [event] = await until(matching, of_type("notification_event"))
        assert event["event_type"] == "notification_created"
        assert event["user_id"] == user
        assert event["notification"]["id"] == "n-1"
        assert event["notification"]["module_name"] == "sheets"
        assert isinstance(event["seq"], int)
        for ws in (filtered_out, unsubscribed, other_user):
            assert await pending(ws) == []


async def test_mark_read_reaches_both_tabs_and_leaves_the_unread_list(server: Server) -> None:
    user = new_user()
    engine = server.engine
    await engine.create_notification(user, notification("n-r"), created_by="test")
    await engine.create_notification(user, notification("n-s"), created_by="test")
    async with server.connect(server.token(user)) as tab1, server.connect(server.token(user)) as tab2:
        await greet(tab1)
        await greet(tab2)
        await send(tab1, {"type": "notification_read", "notification_id": "n-r", "client_msg_id": "r-1"})
        seen = await until(tab1, of_type("ack", client_msg_id="r-1"))
        [read] = [m for m in seen if m["type"] == "notification_event"]
        assert read["event_type"] == "notification_read"
        assert read["notification"]["id"] == "n-r"
        assert read["user_id"] == user
        [other_tab] = await until(tab2, of_type("notification_event"))
        assert other_tab["event_type"] == "notification_read"
        assert other_tab["notification"]["id"] == "n-r"

        reply = await subscribe(tab2)
        assert [n["id"] for n in reply["unread"]] == ["n-s"]


async def test_read_of_an_unknown_or_foreign_notification_is_not_found(server: Server) -> None:
    user, other = new_user(), new_user()
    await server.engine.create_notification(other, notification("n-foreign"), created_by="test")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        for nid in ("n-missing", "n-foreign"):
            reply = await request(
                ws, {"type": "notification_read", "notification_id": nid, "client_msg_id": f"x-{nid}"}
            )
            assert reply["type"] == "error"
            assert reply["code"] == "NOT_FOUND"
            assert reply["client_msg_id"] == f"x-{nid}"
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_a_retried_subscription_is_answered_as_the_original_and_changes_no_filters(
    server: Server,
) -> None:
    """A `subscribe_notifications` repeated with its `client_msg_id` on the connection that sent it is
    answered as the original was (its filters, its `unread`, its `seq`) and applies nothing again: a
    late retry of an earlier subscription, or one whose body differs, leaves the filters of the
    connection's latest subscription in force, as the log records them."""
    user = new_user()
    engine = server.engine
    await engine.create_notification(user, notification("n-a1", category="a"), created_by="test")
    async with server.connect(server.token(user)) as ws:
        await greet(ws)
        original = await subscribe(ws, categories=["a"], client_msg_id="sub-1")
        assert [m["type"] for m in await pending(ws)] == ["ack"]
        await subscribe(ws, categories=["b"], client_msg_id="sub-2")
        await pending(ws)  # its ack

        for retried in ({"categories": ["a"]}, {"categories": ["c"]}):
            again = await subscribe(ws, **retried, client_msg_id="sub-1")
            assert again == original
            assert await pending(ws) == [{"type": "ack", "client_msg_id": "sub-1", "seq": original["seq"]}]

        await engine.create_notification(user, notification("n-a2", category="a"), created_by="test")
        await engine.create_notification(user, notification("n-b1", category="b"), created_by="test")
        await engine.create_notification(user, notification("n-c1", category="c"), created_by="test")
        delivered = [m["notification"]["id"] for m in await pending(ws) if m["type"] == "notification_event"]
        assert delivered == ["n-b1"]
