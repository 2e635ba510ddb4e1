"""Rate limits and typing expiry on a live server with small limits: real clients, real PostgreSQL.

One server for the module (WEBSOCKET_REQUESTS_PER_MINUTE=3, TYPING_TIMEOUT_SECONDS=0.3); each test uses
users of its own, so their budgets do not meet.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from engine.log.store import EventStore
from engine.model.catalogue import EXPIRED, TYPING_STOPPED
from engine.model.streams import room_stream, user_stream, volatile_stream
from tests.api.conftest import Server, make_settings, receive, request, serve
from tests.api.live_helpers import greet, join, pending, send, until


@pytest.fixture(scope="module")
async def limited(database_url: str) -> AsyncIterator[Server]:
    settings = make_settings(
        database_url,
        websocket_requests_per_minute=3,
        websocket_requests_per_hour=1000,
        volatile_messages_per_second=1000,
        typing_timeout_seconds=0.3,
    )
    async with serve(settings) as running:
        yield running


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def status(cmid: str) -> dict[str, Any]:
    return {"type": "status_update", "status": "away", "client_msg_id": cmid}


async def answer(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """The `ack` or `error` for `message` (fanned-out messages before it are skipped)."""
    await send(ws, message)
    return (await until(ws, lambda m: m["type"] in ("ack", "error")))[-1]


async def accepted(ws: ClientConnection, message: dict[str, Any]) -> None:
    reply = await answer(ws, message)
    assert reply["type"] == "ack", reply


def assert_rate_limited(reply: dict[str, Any], cmid: str | None = None) -> None:
    assert reply["type"] == "error", reply
    assert reply["code"] == "RATE_LIMIT_EXCEEDED"
    assert reply["error"].startswith("Rate limit exceeded: too many requests per ")
    assert isinstance(reply["retry_after"], int) and reply["retry_after"] >= 1
    if cmid is not None:
        assert reply["client_msg_id"] == cmid


async def test_the_fourth_message_is_refused_and_not_persisted(limited: Server, store: EventStore) -> None:
    user = unique("flooder")
    async with limited.connect(limited.token(user)) as ws:
        await greet(ws)
        for n in range(3):
            await accepted(ws, status(f"{user}-{n}"))
        reply = await request(ws, status(f"{user}-3"))
        assert_rate_limited(reply, f"{user}-3")
        assert reply["error"] == "Rate limit exceeded: too many requests per minute"
        # Blocked (the default 15 minutes): later messages are refused too; ping still pongs.
        assert_rate_limited(await answer(ws, status(f"{user}-4")))
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
    events = await store.read_stream(user_stream(user))
    assert [e.idempotency_key for e in events] == [f"{user}-0", f"{user}-1", f"{user}-2"]


async def test_two_connections_of_one_user_share_the_budget(limited: Server, store: EventStore) -> None:
    user = unique("two-tabs")
    token = limited.token(user)
    async with limited.connect(token) as tab1, limited.connect(token) as tab2:
        await greet(tab1)
        await greet(tab2)
        await accepted(tab1, status(f"{user}-a"))
        await accepted(tab2, status(f"{user}-b"))
        await accepted(tab1, status(f"{user}-c"))
        assert_rate_limited(await answer(tab2, status(f"{user}-d")), f"{user}-d")
        assert_rate_limited(await answer(tab1, status(f"{user}-e")), f"{user}-e")
    events = await store.read_stream(user_stream(user))
    assert len(events) == 3


async def test_cursor_moves_use_the_volatile_budget(limited: Server, store: EventStore) -> None:
    user, room = unique("mover"), unique("room")
    async with limited.connect(limited.token(user)) as ws:
        await greet(ws)
        await join(ws, room)  # 1 of 3
        for n in range(10):
            move = {"type": "cursor_move", "room": room, "x": n, "y": n, "client_msg_id": f"{user}-m{n}"}
            await accepted(ws, move)
        await accepted(ws, status(f"{user}-s1"))  # 2 of 3
        await accepted(ws, status(f"{user}-s2"))  # 3 of 3
        assert_rate_limited(await answer(ws, status(f"{user}-s3")))
    cursors = await store.read_stream(volatile_stream(room_stream(room)))
    assert len(cursors) == 10


async def test_a_flood_of_volatile_messages_is_refused(database_url: str) -> None:
    settings = make_settings(database_url, volatile_messages_per_second=2, websocket_block_duration_minutes=0)
    user, room = unique("flood"), unique("room")
    async with serve(settings) as server, server.connect(server.token(user)) as ws:
        await greet(ws)
        await join(ws, room)
        replies = [
            await request(
                ws, {"type": "typing_start", "room": room, "cell_id": "A1", "client_msg_id": f"t{n}"}
            )
            for n in range(5)
        ]
        refused = [r for r in replies if r["type"] == "error"]
        assert refused, replies
        for reply in refused:
            assert_rate_limited(reply)
            assert reply["error"] == "Rate limit exceeded: too many requests per second"


async def test_typing_without_a_stop_expires_for_the_other_member(limited: Server, store: EventStore) -> None:
    alice, bob, room = unique("alice"), unique("bob"), unique("room")
    async with limited.connect(limited.token(alice)) as a, limited.connect(limited.token(bob)) as b:
        await greet(a)
        await greet(b)
        await join(a, room)
        await join(b, room)
        await pending(a)
        await send(b, {"type": "typing_start", "room": room, "cell_id": "C3"})
        started = await receive(a)
        assert started["type"] == "user_typing_start"
        stopped = await receive(a)  # nobody sent a stop: the sweeper did
        assert stopped == {
            "type": "user_typing_stop",
            "room": room,
            "user_id": bob,
            "username": bob,
            "cell_id": "C3",
        }
    events = await store.read_stream(volatile_stream(room_stream(room)))
    stops = [e for e in events if e.type == TYPING_STOPPED]
    assert [e.data["reason"] for e in stops] == [EXPIRED]
