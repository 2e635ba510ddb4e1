"""Protocol 1.1 across two real nodes on one database: range updates racing from both have one winner,
a message sent through one node to an offline user waits for them on the other, and an admin removes
a connection through either node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from engine.model.errors import StoreUnavailable
from tests.api.conftest import Server, fresh_database, make_settings, receive, serve
from tests.api.live_helpers import greet, join, of_type, pending, send, until
from tests.api.rest_helpers import rest

HEARTBEAT = 0.3


@pytest.fixture(scope="module")
async def nodes(server_url: str) -> AsyncIterator[tuple[Server, Server]]:
    async with fresh_database(server_url) as database_url:
        settings = make_settings(
            database_url,
            websocket_requests_per_minute=1_000_000,
            websocket_requests_per_hour=1_000_000,
            node_heartbeat_seconds=HEARTBEAT,
            node_dead_after_seconds=10 * HEARTBEAT,
        )
        async with serve(settings) as first, serve(settings) as second:
            # Each must know the other is alive before it asks it anything; nothing announces that.
            engines = (first.engine, second.engine)
            async with asyncio.timeout(10):
                while not all(engine.node.nodes.peers for engine in engines):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            yield first, second


async def test_ranges_racing_from_two_nodes_have_exactly_one_winner(
    nodes: tuple[Server, Server], room: str
) -> None:
    first, second = nodes
    sheet = f"s-{room}"
    async with first.connect(first.token("cy")) as cy, second.connect(second.token("di")) as di:
        await greet(cy), await greet(di)
        await join(cy, room), await join(di, room)
        seed = {"type": "cells_update", "sheet_id": sheet, "room": room, "client_msg_id": f"{room}-seed"}
        await send(cy, {**seed, "cells": [{"cell_id": "A1", "value": 0}, {"cell_id": "A2", "value": 0}]})
        await until(cy, of_type("ack")), await until(di, of_type("cells_updated"))

        def race(name: str) -> dict[str, Any]:
            cells = [
                {"cell_id": "A1", "value": name, "version": 1},
                {"cell_id": "A2", "value": name, "version": 1},
            ]
            return {
                "type": "cells_update",
                "sheet_id": sheet,
                "cells": cells,
                "client_msg_id": f"{room}-{name}",
            }

        await asyncio.gather(send(cy, race("cy")), send(di, race("di")))

        async def outcome(ws: Any, name: str) -> str:
            while True:
                message = await receive(ws)
                if message["type"] == "error":
                    assert message["code"] == "VERSION_CONFLICT" and len(message["conflicts"]) == 2
                    return "lost"
                if message["type"] == "cells_updated" and message["cells"][0]["value"] == name:
                    return "won"

        results = await asyncio.gather(outcome(cy, "cy"), outcome(di, "di"))
        assert sorted(results) == ["lost", "won"]
        await send(cy, {"type": "load_sheet", "sheet_id": sheet})
        state = (await until(cy, of_type("sheet_state")))[-1]
        assert {cell["version"] for cell in state["cells"].values()} == {2}


async def test_a_message_sent_through_one_node_waits_for_its_offline_user_on_the_other(
    nodes: tuple[Server, Server], room: str
) -> None:
    first, second = nodes
    user = f"away-{room}"
    sent = await rest(
        first, "POST", f"/ws/users/{user}/notify", json={"type": "direct_message", "message": "hi"}
    )
    assert sent.json()["delivered_to"] == 0
    async with second.connect(second.token(user)) as ws:
        await greet(ws)
        # The other node may publish the message live to this new connection first (its follower
        # reads the log just after the connect): either way it is unread in the inbox.
        await send(ws, {"type": "subscribe_notifications"})
        subscribed = (await until(ws, of_type("notifications_subscribed")))[-1]
        assert [n["message"] for n in subscribed["unread"]] == ["hi"]


async def test_an_admin_removes_a_connection_through_any_node(
    nodes: tuple[Server, Server], room: str
) -> None:
    first, second = nodes
    async with second.connect(second.token("eve")) as eve, second.connect(second.token("fay")) as fay:
        connection_id = await greet(eve)
        await greet(fay)
        await join(eve, room), await join(fay, room)
        await pending(fay)
        removed = await rest(first, "DELETE", f"/ws/connections/{connection_id}")
        assert removed.status_code == 200, removed.text
        assert removed.json() == {
            "connection_id": connection_id,
            "user_id": "eve",
            "rooms_left": [room],
            "close_code": 4410,
        }
        notice = await until(eve, of_type("error"))
        assert notice[-1]["code"] == "CONNECTION_REMOVED"
        with pytest.raises(ConnectionClosed) as closed:
            await receive(eve)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
        assert [m["type"] for m in await until(fay, of_type("user_left"))][-2:] == ["room_state", "user_left"]
    missing = await rest(first, "DELETE", "/ws/connections/ws_nobody")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")


async def test_a_peer_that_cannot_tell_whether_it_holds_a_subject_makes_the_ask_retryable(
    nodes: tuple[Server, Server],
) -> None:
    """A peer whose handler could not decide (its store unreachable) may hold what is asked about:
    the asking node hears StoreUnavailable (retryable), not "nobody has it"."""
    first, second = nodes
    answers: list[str] = []

    async def cannot_tell(subject: str) -> dict[str, Any] | None:
        answers.append(subject)
        if subject == "unreadable":
            raise StoreUnavailable("the event log is unreachable")
        return None

    second.engine.node.control.serve("probe", cannot_tell)
    with pytest.raises(StoreUnavailable, match="could not tell"):
        await first.engine.node.control.ask("probe", "unreadable")
    assert await first.engine.node.control.ask("probe", "readable") is None
    assert answers == ["unreadable", "readable"]


async def test_a_member_s_cursor_shows_to_a_joiner_through_a_node_that_never_saw_it_move(
    nodes: tuple[Server, Server], room: str
) -> None:
    """The second node reads the room from the log at the join: the cursor moves are volatile events,
    outside the room's stream, and must show all the same, as they do through the first node."""
    first, second = nodes
    async with first.connect(first.token("mo")) as mo, first.connect(first.token("ned")) as ned:
        await greet(mo), await greet(ned)
        await join(mo, room), await join(ned, room)
        await send(
            mo, {"type": "cursor_move", "room": room, "x": 3, "y": 4, "cell": "C4", "client_msg_id": "c1"}
        )
        await until(mo, of_type("ack", client_msg_id="c1"))
        await send(ned, {"type": "cursor_move", "room": room, "x": 1, "y": 1, "client_msg_id": "c2"})
        await until(ned, of_type("ack", client_msg_id="c2"))
        await send(ned, {"type": "leave_room", "room_id": room})  # and back: a new stay, no cursor yet
        await until(ned, of_type("room_left"))
        await join(ned, room)
        async with second.connect(second.token("oz")) as oz:
            await greet(oz)
            state = await join(oz, room)
        cursors = {user["user_id"]: user["cursor"] for user in state["users"]}
        assert cursors == {"mo": {"x": 3, "y": 4, "cell": "C4"}, "ned": None, "oz": None}
