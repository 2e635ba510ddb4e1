"""Tokens on open connections, over real sockets: warned before expiry, closed with 4401 at it, and
refreshed in place without a reconnect."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from websockets.exceptions import ConnectionClosed

from engine.log.store import EventStore
from engine.model.catalogue import REVOKED, USER_LEFT_ROOM
from engine.model.streams import room_stream
from tests.api.conftest import Server, receive, request, wait_for_events
from tests.api.live_helpers import greet, join, of_type, pending, send, until

SHORT = timedelta(seconds=3)


async def test_an_expiring_token_is_warned_then_closed_with_4401(server: Server) -> None:
    async with server.connect(server.token("ann", ttl=SHORT)) as ann:
        await greet(ann)
        warning = await until(ann, of_type("token_expiring"))
        expires_at = datetime.fromisoformat(warning[-1]["expires_at"])
        assert expires_at > datetime.now(UTC)
        notice = await until(ann, of_type("error"))
        assert (notice[-1]["code"], notice[-1]["error"]) == ("AUTHENTICATION_FAILED", "token expired")
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ann)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_refresh_token_swaps_the_token_in_place(server: Server, room: str) -> None:
    async with server.connect(server.token("ann", ttl=SHORT)) as ann:
        await greet(ann)
        await join(ann, room)
        await until(ann, of_type("token_expiring"))
        fresh = server.token("ann", ttl=timedelta(hours=1))
        refreshed = await request(ann, {"type": "refresh_token", "token": fresh})
        assert refreshed["type"] == "token_refreshed"
        assert datetime.fromisoformat(refreshed["expires_at"]) > datetime.now(UTC) + timedelta(minutes=59)
        await asyncio.sleep(SHORT.total_seconds())  # past the first token's expiry
        assert (await request(ann, {"type": "ping"}))["type"] == "pong"
        moved = await request(
            ann, {"type": "cursor_move", "room": room, "x": 1, "y": 2, "client_msg_id": f"{room}-c"}
        )
        assert moved["type"] == "ack"


async def test_a_bad_refresh_is_refused_and_the_old_token_holds(server: Server) -> None:
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        for token, reason in (
            (server.token("bob"), "another user"),
            ("not-a-jwt", "invalid token"),
            (server.token("ann", ttl=-SHORT), "token expired"),
        ):
            refusal = await request(ann, {"type": "refresh_token", "token": token})
            assert refusal["code"] == "AUTHENTICATION_FAILED" and reason in refusal["error"]
        assert (await request(ann, {"type": "ping"}))["type"] == "pong"


async def test_a_refreshed_token_that_no_longer_allows_a_room_leaves_it(
    server: Server, store: EventStore, room: str
) -> None:
    kept, dropped = f"team-{room}", f"other-{room}"
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, kept)
        await join(ann, dropped)
        narrower = server.token("ann", rooms=["team-*"])
        await send(ann, {"type": "refresh_token", "token": narrower})
        answers = await until(ann, of_type("room_left"))
        assert [m["type"] for m in answers] == ["token_refreshed", "room_left"]
        left = answers[-1]
        assert (left["room_id"], left["reason"]) == (dropped, REVOKED)
        assert "client_msg_id" not in left  # the server's leave, not an answer to one of the client's
        assert await pending(ann) == []  # the room the new token still allows is kept
        denied = await request(ann, {"type": "join_room", "room_id": dropped})
        assert denied["code"] == "PERMISSION_DENIED"
    [_, left] = await wait_for_events(store, room_stream(dropped), 2)
    assert (left.type, left.data["reason"]) == (USER_LEFT_ROOM, REVOKED)
