"""Framing and validation on a live socket: every bad message gets its own error code and leaves the
connection usable; only an oversize frame closes it."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.api.conftest import Server, receive, request


async def assert_still_usable(ws: ClientConnection) -> None:
    assert (await request(ws, {"type": "ping"}))["type"] == "pong"


async def test_websocket_ping_answers_pong_with_a_timestamp(client: ClientConnection) -> None:
    reply = await request(client, {"type": "ping", "client_msg_id": "p-1"})
    assert reply["type"] == "pong"
    assert reply["ts"].endswith("Z")
    assert reply["client_msg_id"] == "p-1"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "INVALID_JSON"),
        (b"\xff\xfe", "INVALID_JSON"),
        ('["join_room"]', "VALIDATION_ERROR"),
        ('{"room_id": "r"}', "VALIDATION_ERROR"),
        ('{"type": "teleport"}', "UNKNOWN_MESSAGE_TYPE"),
        ('{"type": "join_room"}', "VALIDATION_ERROR"),
        ('{"type": "join_room", "room_id": ""}', "VALIDATION_ERROR"),
        ('{"type": "join_room", "room_id": 7}', "VALIDATION_ERROR"),
        ('{"type": "join_room", "room_id": "' + "r" * 129 + '"}', "VALIDATION_ERROR"),
    ],
    ids=[
        "invalid-json",
        "invalid-utf8",
        "not-an-object",
        "no-type",
        "unknown-type",
        "no-room-id",
        "empty-room-id",
        "numeric-room-id",
        "long-room-id",
    ],
)
async def test_websocket_bad_message_gets_its_error_and_the_socket_stays_open(
    client: ClientConnection, frame: str | bytes, code: str
) -> None:
    reply = await request(client, frame)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert reply["error"]
    assert reply["timestamp"].endswith("Z")
    await assert_still_usable(client)


async def test_websocket_error_echoes_client_msg_id_and_request_id(client: ClientConnection) -> None:
    reply = await request(client, {"type": "join_room", "client_msg_id": "m-7", "request_id": "r-7"})
    assert (reply["code"], reply["client_msg_id"], reply["request_id"]) == ("VALIDATION_ERROR", "m-7", "r-7")
    assert reply["details"][0]["loc"] == ["room_id"]
    reply = await request(client, {"type": "teleport", "client_msg_id": "m-8"})
    assert (reply["code"], reply["client_msg_id"]) == ("UNKNOWN_MESSAGE_TYPE", "m-8")


async def test_websocket_oversize_frame_closes_with_1009(server: Server) -> None:
    limit = server.settings.max_message_bytes
    async with server.connect(server.token()) as ws:
        await receive(ws)
        await ws.send('{"type":"ping","pad":"' + "x" * limit + '"}')
        reply = await receive(ws)
        assert reply["code"] == "MESSAGE_TOO_LARGE"
        with pytest.raises(ConnectionClosed):
            await receive(ws)
        assert ws.close_code == 1009


async def test_websocket_frame_at_the_limit_is_accepted(server: Server) -> None:
    limit = server.settings.max_message_bytes
    frame = '{"type":"ping","pad":"' + "x" * limit + '"}'
    frame = frame[: -(len(frame) - limit) - 2] + '"}'
    assert len(frame.encode()) == limit
    async with server.connect(server.token()) as ws:
        await receive(ws)
        assert (await request(ws, frame))["type"] == "pong"


async def test_websocket_message_that_cannot_be_acted_on_is_answered_not_ignored(
    client: ClientConnection,
) -> None:
    """A message that cannot be acted on gets an explicit error (a client must never wait for a reply
    that will not come) and changes nothing: here a read of a notification the user does not have."""
    read = {"type": "notification_read", "notification_id": "n-1", "client_msg_id": "m-9"}
    reply = await request(client, read)
    assert (reply["code"], reply["client_msg_id"]) == ("NOT_FOUND", "m-9")
    assert "n-1" in reply["error"]
    assert (await request(client, {"type": "ping"}))["type"] == "pong"
