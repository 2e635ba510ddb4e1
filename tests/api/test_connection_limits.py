"""The node's caps and the bad-frame budget, each against its own real server with small limits:
what the refused client receives (an error, then a documented close), that nothing was persisted for
it, and that everyone else is still served."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from engine.log.store import EventStore
from engine.model.catalogue import USER_JOINED_ROOM
from engine.model.streams import room_stream
from engine.protocol.close_codes import CloseCode
from tests.api.conftest import RECEIVE_TIMEOUT, Server, make_settings, receive, request, serve
from tests.api.live_helpers import greet, join, send

UNLIMITED: dict[str, Any] = {
    "websocket_requests_per_minute": 1_000_000,
    "websocket_requests_per_hour": 1_000_000,
}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def capped(database_url: str) -> AsyncIterator[Server]:
    settings = make_settings(
        database_url,
        max_connections=6,
        max_connections_per_user=3,
        max_rooms_per_connection=3,
        bad_frames_per_window=5,
        bad_frame_window_seconds=30,
        **UNLIMITED,
    )
    async with serve(settings) as running:
        yield running


async def refused(ws: ClientConnection) -> tuple[dict[str, Any], int]:
    """The error a refused socket gets, and the close code that follows it."""
    error = await receive(ws)
    with pytest.raises(ConnectionClosed):
        await receive(ws)
    assert ws.close_code is not None
    return error, ws.close_code


async def test_one_connection_over_the_per_user_cap_gets_an_error_and_4429(capped: Server) -> None:
    user = new_id("tabs")
    async with AsyncExitStack() as stack:
        tabs = [await stack.enter_async_context(capped.connect(capped.token(user))) for _ in range(3)]
        for tab in tabs:
            await greet(tab)
        async with capped.connect(capped.token(user)) as fourth:
            error, code = await refused(fourth)
        assert error["type"] == "error" and error["code"] == "TOO_MANY_CONNECTIONS"
        assert error["limit"] == 3
        assert code == CloseCode.TOO_MANY_CONNECTIONS
        # Another user is not affected, and the user's open tabs still work.
        async with capped.connect(capped.token(new_id("other"))) as other:
            await greet(other)
        assert (await request(tabs[0], {"type": "ping"}))["type"] == "pong"
        await tabs[0].close()
    # One tab closed: there is room for one more again.
    async with capped.connect(capped.token(user)) as again:
        await greet(again)


async def test_one_connection_over_the_node_cap_gets_1013(capped: Server) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(6):
            ws = await stack.enter_async_context(capped.connect(capped.token(new_id("crowd"))))
            await greet(ws)
        async with capped.connect(capped.token(new_id("late"))) as late:
            error, code = await refused(late)
        assert error["code"] == "NODE_FULL"
        assert code == CloseCode.NODE_FULL
    async with capped.connect(capped.token(new_id("later"))) as later:  # the crowd left
        await greet(later)


async def test_a_join_past_the_rooms_cap_is_refused_and_persists_nothing(
    capped: Server, store: EventStore
) -> None:
    rooms = [new_id("cap-room") for _ in range(4)]
    async with capped.connect(capped.token(new_id("roamer"))) as ws:
        await greet(ws)
        for room in rooms[:3]:
            await join(ws, room)
        error = await request(ws, {"type": "join_room", "room_id": rooms[3], "client_msg_id": "j4"})
        assert (error["type"], error["code"], error["client_msg_id"]) == ("error", "VALIDATION_ERROR", "j4")
        assert error["limit"] == 3
        assert "at most 3 rooms" in error["error"]
        assert await store.read_stream(room_stream(rooms[3])) == []
        rejoin = await request(ws, {"type": "join_room", "room_id": rooms[0]})  # one it is in: fine
        assert rejoin["type"] == "room_state"
        await send(ws, {"type": "leave_room", "room_id": rooms[1]})
        await join(ws, rooms[3])
    events = await store.read_stream(room_stream(rooms[3]))
    assert [e.type for e in events][:1] == [USER_JOINED_ROOM]


async def test_bad_frames_past_the_budget_close_1008_and_spare_the_others(
    capped: Server, store: EventStore
) -> None:
    user, room = new_id("sloppy"), new_id("budget-room")
    async with capped.connect(capped.token(user)) as sloppy, capped.connect(capped.token(user)) as tidy:
        await greet(sloppy)
        await greet(tidy)
        await join(tidy, room)
        bad_frames = ["{bad", '{"type": "no_such_type"}', '{"type": "join_room"}', "[]", '"text"']
        for frame in bad_frames:  # the budget: each gets its error, the socket stays open
            reply = await request(sloppy, frame)
            assert reply["type"] == "error"
            assert reply["code"] in {"INVALID_JSON", "UNKNOWN_MESSAGE_TYPE", "VALIDATION_ERROR"}
        # Good messages never count against it.
        for _ in range(10):
            assert (await request(sloppy, {"type": "ping"}))["type"] == "pong"
        last = await request(sloppy, '{"type": "cell_update", "sheet_id": 7}')
        assert last["code"] == "VALIDATION_ERROR"  # the frame over the budget is still answered
        with pytest.raises(ConnectionClosed):
            await receive(sloppy)
        assert sloppy.close_code == CloseCode.BAD_FRAMES
        # The same user's other connection is untouched, and nothing of the bad frames was stored.
        assert (await request(tidy, {"type": "ping"}))["type"] == "pong"
        assert [e.type for e in await store.read_stream(room_stream(room))] == [USER_JOINED_ROOM]


async def test_the_bad_frame_budget_is_a_sliding_window(database_url: str) -> None:
    settings = make_settings(database_url, bad_frames_per_window=3, bad_frame_window_seconds=0.5, **UNLIMITED)
    async with serve(settings) as srv, srv.connect(srv.token(new_id("slow-typo"))) as ws:
        await greet(ws)
        for _ in range(4):  # three per window, four windows: never over
            for _ in range(3):
                assert (await request(ws, "{bad"))["code"] == "INVALID_JSON"
            await asyncio.sleep(0.6)
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        for _ in range(3):
            await request(ws, "{bad")
        await request(ws, "{bad")
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await ws.wait_closed()
        assert ws.close_code == CloseCode.BAD_FRAMES
