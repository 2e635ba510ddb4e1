"""Helpers for tests with several live clients: read up to a message, and prove a message was not sent.

"Not sent" without timing: a ping's `pong` is queued for a connection behind everything published to it
before the ping was handled, so the messages read before the pong are all there is.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.api.conftest import receive

Message = dict[str, Any]


async def greet(ws: ClientConnection) -> str:
    """Read the `connected` greeting; returns the connection id."""
    greeting = await receive(ws)
    assert greeting["type"] == "connected"
    return str(greeting["connection_id"])


async def send(ws: ClientConnection, message: Message) -> None:
    await ws.send(json.dumps(message))


async def until(ws: ClientConnection, match: Callable[[Message], bool]) -> list[Message]:
    """Messages up to and including the first that matches (a receive timeout fails the test)."""
    seen: list[Message] = []
    while True:
        message = await receive(ws)
        seen.append(message)
        if match(message):
            return seen


def of_type(kind: str, **fields: object) -> Callable[[Message], bool]:
    return lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


async def pending(ws: ClientConnection) -> list[Message]:
    """Everything queued for `ws` before a ping now, in order (the pong itself left out)."""
    await send(ws, {"type": "ping"})
    return (await until(ws, of_type("pong")))[:-1]


async def join(ws: ClientConnection, room_id: str, **extra: object) -> Message:
    """Join and return the `room_state` reply (messages of other rooms that arrive first are read
    past; an error fails the test)."""
    await send(ws, {"type": "join_room", "room_id": room_id, **extra})
    seen = await until(
        ws, lambda m: m["type"] == "error" or (m["type"] == "room_state" and m["room_id"] == room_id)
    )
    assert seen[-1]["type"] == "room_state", seen[-1]
    return seen[-1]


async def resume(ws: ClientConnection, room_id: str, since: int, **extra: object) -> list[Message]:
    """Join with `since` and return what came until `replay_complete`: the missed events (joins and
    leaves as `user_joined`/`user_left` only), then the room's `room_state` as of the last of them,
    then `replay_complete`, which the protocol promises in that order."""
    await send(ws, {"type": "join_room", "room_id": room_id, "since": since, **extra})
    replayed = await until(ws, of_type("replay_complete"))
    assert [m["type"] for m in replayed[-2:]] == ["room_state", "replay_complete"], replayed[-2:]
    assert replayed[-2]["seq"] == replayed[-1]["seq"]
    assert "room_state" not in [m["type"] for m in replayed[:-2]]
    return replayed


async def declare(ws: ClientConnection, status: str) -> Message:
    """A `status_update`, under an id of its own; returns its ack (an error fails)."""
    cmid = f"status-{uuid.uuid4().hex[:12]}"
    await send(ws, {"type": "status_update", "status": status, "client_msg_id": cmid})
    seen = await until(ws, lambda m: m.get("client_msg_id") == cmid and m["type"] in {"ack", "error"})
    assert seen[-1]["type"] == "ack", seen[-1]
    return seen[-1]


async def write_cell(
    ws: ClientConnection, room: str, sheet: str, cell_id: str = "A1", value: object = 1, cmid: str = "w1"
) -> Message:
    """One `cell_update` in a room the connection has joined; returns its ack (an error fails)."""
    update = {"type": "cell_update", "sheet_id": sheet, "cell_id": cell_id, "value": value, "room": room}
    await send(ws, {**update, "client_msg_id": cmid})
    seen = await until(ws, lambda m: m.get("client_msg_id") == cmid and m["type"] in {"ack", "error"})
    assert seen[-1]["type"] == "ack", seen[-1]
    return seen[-1]


def types(messages: list[Message]) -> list[str]:
    return [str(m["type"]) for m in messages]
