"""Presence is per user, over real sockets: another tab coming or going is no news to others, a
declared status outlives a reconnect, one event reaches one connection once, and a member that has
its `room_state` misses nothing the room sends after it, cursors included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from websockets.asyncio.client import ClientConnection

from engine.model.catalogue import STOPPED, TYPING_STARTED, TYPING_STOPPED
from engine.model.streams import room_stream, volatile_stream
from tests.api.conftest import RECEIVE_TIMEOUT, Server, fresh_database, make_settings, request, serve
from tests.api.live_helpers import Message, greet, join, of_type, pending, resume, send, types, until


async def test_a_second_tab_joining_or_leaving_is_no_news_to_the_others(server: Server, room: str) -> None:
    async with (
        server.connect(server.token("ann")) as ann,
        server.connect(server.token("bob")) as bob_tab1,
        server.connect(server.token("bob")) as bob_tab2,
    ):
        await greet(ann), await greet(bob_tab1), await greet(bob_tab2)
        await join(ann, room)
        await join(bob_tab1, room)
        assert types(await pending(ann)) == ["room_state", "user_joined"]
        state = await join(bob_tab2, room)  # the second tab gets its room_state
        assert [u["user_id"] for u in state["users"]] == ["ann", "bob"]
        assert await pending(ann) == [] and await pending(bob_tab1) == []
        await send(bob_tab2, {"type": "leave_room", "room_id": room})
        await until(bob_tab2, of_type("room_left"))
        assert await pending(ann) == [] and await pending(bob_tab1) == []
        await send(bob_tab1, {"type": "leave_room", "room_id": room})
        await until(bob_tab1, of_type("room_left"))
        assert types(await pending(ann)) == ["room_state", "user_left"]


async def test_a_tab_joining_a_room_it_is_in_again_is_no_news_to_the_others(
    server: Server, room: str
) -> None:
    """A `join_room` repeated by a connection already in the room (no `client_msg_id`: a client that
    re-syncs) gets its `room_state`; the others, live or resuming, must not hear ann join again."""
    async with server.connect(server.token("ann")) as ann, server.connect(server.token("bob")) as bob:
        await greet(ann), await greet(bob)
        await join(bob, room)
        await join(ann, room)
        assert types(await pending(bob)) == ["room_state", "user_joined"]
        again = await join(ann, room)
        assert [u["user_id"] for u in again["users"]] == ["bob", "ann"]
        assert await pending(bob) == []
        async with server.connect(server.token("cat")) as cat:
            await greet(cat)
            replayed = await resume(cat, room, 0)
            joined = [m["user"]["user_id"] for m in replayed if m["type"] == "user_joined"]
            assert joined == ["bob", "ann", "cat"]  # ann once, then the resuming joiner itself


def names(state: Message) -> dict[str, str]:
    return {u["user_id"]: u["username"] for u in state["users"]}


async def test_a_join_again_under_a_refreshed_name_shows_it_to_the_others_live_and_in_a_resume(
    server: Server, room: str
) -> None:
    """A token refreshed with another `username` and email, then a `join_room` repeated by the
    connection: the others see the new name at once, as a first join shows a name (`room_state`, then
    `user_joined`), and a resume replays it as that `user_joined`. A repeat that changes nothing
    stays no news."""
    ann, bob, cat = f"{room}-ann", f"{room}-bob", f"{room}-cat"
    async with (
        server.connect(server.token(ann, username="Ann")) as ann_ws,
        server.connect(server.token(bob)) as bob_ws,
    ):
        await greet(ann_ws), await greet(bob_ws)
        await join(bob_ws, room)
        await join(ann_ws, room)
        assert types(await pending(bob_ws)) == ["room_state", "user_joined"]
        fresh = server.token(ann, username="Ann Lee", email="ann@example.com")
        assert (await request(ann_ws, {"type": "refresh_token", "token": fresh}))["type"] == "token_refreshed"
        assert names(await join(ann_ws, room)) == {bob: bob, ann: "Ann Lee"}
        seen = await pending(bob_ws)
        assert types(seen) == ["room_state", "user_joined"]
        state, renamed = seen
        assert names(state) == {bob: bob, ann: "Ann Lee"} and state["seq"] == renamed["seq"] == 3
        assert renamed["user"] == next(u for u in state["users"] if u["user_id"] == ann)
        assert (renamed["user"]["username"], renamed["user"]["email"]) == ("Ann Lee", "ann@example.com")
        await join(ann_ws, room)  # again, under the same name
        assert await pending(bob_ws) == []
        async with server.connect(server.token(cat)) as cat_ws:
            await greet(cat_ws)
            replayed = await resume(cat_ws, room, 0)
            joins = [m for m in replayed if m["type"] == "user_joined"]
            assert [(m["user"]["user_id"], m["user"]["username"]) for m in joins] == [
                (bob, bob),
                (ann, "Ann"),
                (ann, "Ann Lee"),
                (cat, cat),
            ]
            assert joins[2] == renamed  # as bob saw it live


async def test_a_second_tab_under_another_name_shows_it_to_the_others(server: Server, room: str) -> None:
    """The room shows a user by their newest token's name: a second tab joining under another one
    tells the others, as a rename does; its leave, with the first tab still in, does not."""
    ann, bob = f"{room}-ann", f"{room}-bob"
    async with (
        server.connect(server.token(ann, username="Ann")) as ann_tab1,
        server.connect(server.token(ann, username="Ann Lee")) as ann_tab2,
        server.connect(server.token(bob)) as bob_ws,
    ):
        await greet(ann_tab1), await greet(ann_tab2), await greet(bob_ws)
        await join(bob_ws, room)
        await join(ann_tab1, room)
        await pending(bob_ws)
        await join(ann_tab2, room)
        seen = await pending(bob_ws)
        assert types(seen) == ["room_state", "user_joined"]
        assert names(seen[0]) == {bob: bob, ann: "Ann Lee"} and seen[1]["user"]["username"] == "Ann Lee"
        await send(ann_tab2, {"type": "leave_room", "room_id": room})
        await until(ann_tab2, of_type("room_left"))
        assert await pending(bob_ws) == []


async def test_a_declared_status_survives_a_reconnect(server: Server, room: str) -> None:
    async with server.connect(server.token("ann")) as ann:
        await greet(ann)
        await join(ann, room)
        await send(ann, {"type": "status_update", "status": "busy", "client_msg_id": f"{room}-s"})
        await until(ann, of_type("ack", client_msg_id=f"{room}-s"))
    async with server.connect(server.token("ann")) as again, server.connect(server.token("bob")) as bob:
        await greet(again), await greet(bob)
        await join(again, room)
        state = await join(bob, room)
        assert {u["user_id"]: u["status"] for u in state["users"]} == {"ann": "busy", "bob": "online"}


async def test_a_status_reaches_each_connection_once_and_never_its_sender(server: Server, room: str) -> None:
    rooms = [f"{room}-{n}" for n in range(3)]
    async with (
        server.connect(server.token("ann")) as ann,
        server.connect(server.token("ann")) as ann_tab,
        server.connect(server.token("obs")) as observer,
    ):
        await greet(ann), await greet(ann_tab), await greet(observer)
        for each in rooms:  # the observer shares three rooms with ann, and so does her other tab
            for ws in (ann, ann_tab, observer):
                await join(ws, each)
        await pending(ann), await pending(ann_tab), await pending(observer)
        await send(ann, {"type": "status_update", "status": "away", "client_msg_id": f"{room}-s"})
        await until(ann, of_type("ack", client_msg_id=f"{room}-s"))
        assert [m for m in await pending(ann) if m["type"] == "user_status_changed"] == []
        for ws in (ann_tab, observer):
            assert types(await pending(ws)) == ["user_status_changed"]


async def test_a_cursor_sent_right_after_both_joined_is_never_lost(server: Server, room: str) -> None:
    """The join's catch-up holds live messages until the joiner is up to date; it must hold cursors
    too, not drop them (a 0.3 s pause used to hide this)."""
    for attempt in range(40):
        fresh = f"{room}-{attempt}"
        async with server.connect(server.token("ann")) as ann, server.connect(server.token("bob")) as bob:
            await greet(ann), await greet(bob)
            await join(ann, fresh)
            await send(bob, {"type": "join_room", "room_id": fresh})
            await until(ann, of_type("user_joined"))  # bob's join has committed: move at once
            await send(ann, {"type": "cursor_move", "room": fresh, "x": attempt, "y": 1})
            moved = await until(bob, of_type("cursor_moved"))
            assert moved[-1]["cursor"]["x"] == attempt
            assert "room_state" in types(moved)  # after the room_state that lists ann


async def test_typing_that_expires_is_stopped_for_the_others_only(database_url: str, room: str) -> None:
    async with (
        serve(make_settings(database_url, typing_timeout_seconds=0.2)) as node,
        node.connect(node.token("ann")) as ann,
        node.connect(node.token("bob")) as bob,
    ):
        await greet(ann), await greet(bob)
        await join(ann, room), await join(bob, room)
        await pending(ann)
        await send(ann, {"type": "typing_start", "room": room, "cell_id": "A1"})
        await until(bob, of_type("user_typing_start"))
        stop = await until(bob, of_type("user_typing_stop"))
        assert stop[-1]["user_id"] == "ann"
        # The stop went to the room when bob got it: a ping's pong now comes after anything ann got.
        assert "user_typing_stop" not in types(await pending(ann))


async def test_typing_of_a_tab_that_closes_is_stopped_while_another_tab_stays(
    database_url: str, room: str
) -> None:
    """Ann types in her first tab and closes it; her second tab keeps her in the room, so nobody gets
    `user_left`. The leave ends that typing (no expiry follows it): the others must hear it stop,
    once, or her indicator stays on their screens for good."""
    async with (
        serve(make_settings(database_url, typing_timeout_seconds=0.2)) as node,
        node.connect(node.token("ann")) as ann_tab,
        node.connect(node.token("bob")) as bob,
    ):
        await greet(ann_tab), await greet(bob)
        async with node.connect(node.token("ann")) as ann:
            await greet(ann)
            for ws in (ann, ann_tab, bob):
                await join(ws, room)
            await pending(bob), await pending(ann_tab)
            await send(ann, {"type": "typing_start", "room": room, "cell_id": "A1"})
            await until(bob, of_type("user_typing_start"))
        stop = await until(bob, of_type("user_typing_stop"))
        assert types(stop) == ["user_typing_stop"] and stop[-1]["user_id"] == "ann"
        assert stop[-1]["cell_id"] == "A1" and stop[-1]["room"] == room
        tab = await until(ann_tab, of_type("user_typing_stop"))  # her other tab showed it too
        assert types(tab) == ["user_typing_start", "user_typing_stop"]
        # Typing that begins after it is the tab's own, and expires on its own timer, once.
        await send(ann_tab, {"type": "typing_start", "room": room, "cell_id": "B2"})
        assert types(await until(bob, of_type("user_typing_stop"))) == [
            "user_typing_start",
            "user_typing_stop",
        ]
        assert "user_typing_stop" not in types(await pending(bob))


async def test_a_declared_status_shows_on_a_node_that_started_after_it_was_declared(
    server_url: str, room: str
) -> None:
    """The second node never folded ann's status change; when she joins through the first, the
    room_state it renders for its own members must still show what she declared."""
    async with fresh_database(server_url) as url:
        settings = make_settings(url)
        async with serve(settings) as first, first.connect(first.token("ann")) as ann:
            await greet(ann)
            await send(ann, {"type": "status_update", "status": "busy", "client_msg_id": f"{room}-s"})
            await until(ann, of_type("ack", client_msg_id=f"{room}-s"))
            async with serve(settings) as second, second.connect(second.token("bob")) as bob:
                await greet(bob)
                await join(bob, room)
                await join(ann, room)
                seen = await until(bob, of_type("user_joined"))
                (state,) = [m for m in seen if m["type"] == "room_state"]
                assert {u["user_id"]: u["status"] for u in state["users"]} == {"ann": "busy", "bob": "online"}


async def test_a_status_reaches_members_on_a_node_that_started_after_the_user_joined(
    server_url: str, room: str
) -> None:
    """The second node never folded ann's join, only loaded the room (with her in it) for bob's: her
    status change must still reach bob, who shares the room with her."""
    async with fresh_database(server_url) as url:
        settings = make_settings(url)
        async with serve(settings) as first, first.connect(first.token("ann")) as ann:
            await greet(ann)
            await join(ann, room)
            async with serve(settings) as second, second.connect(second.token("bob")) as bob:
                await greet(bob)
                state = await join(bob, room)
                assert [u["user_id"] for u in state["users"]] == ["ann", "bob"]
                await send(ann, {"type": "status_update", "status": "away", "client_msg_id": f"{room}-s"})
                await until(ann, of_type("ack", client_msg_id=f"{room}-s"))
                changed = await until(bob, of_type("user_status_changed"))
                assert (changed[-1]["user_id"], changed[-1]["status"]) == ("ann", "away")


async def test_a_status_stays_on_a_node_after_the_users_last_connection_there_leaves(
    server_url: str, room: str
) -> None:
    """Ann stays in the room through the first node when her tab on the second closes. The second
    node, started after her first join, knew her only through that tab; the room_state it renders
    for its own members afterwards must still show what she declared."""
    async with fresh_database(server_url) as url:
        settings = make_settings(url)
        async with serve(settings) as first, first.connect(first.token("ann")) as ann:
            await greet(ann)
            await join(ann, room)
            await send(ann, {"type": "status_update", "status": "busy", "client_msg_id": f"{room}-s"})
            await until(ann, of_type("ack", client_msg_id=f"{room}-s"))
            async with serve(settings) as second, second.connect(second.token("bob")) as bob:
                await greet(bob)
                await join(bob, room)
                async with second.connect(second.token("ann")) as ann_tab:
                    await greet(ann_tab)
                    await join(ann_tab, room)
                node = second.engine.node  # the tab's departure is recorded, and the node is done with it
                async with asyncio.timeout(RECEIVE_TIMEOUT):
                    while node.connections.count_of("ann") or node.departing:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                async with first.connect(first.token("cat")) as cat:
                    await greet(cat)
                    await join(cat, room)
                    seen = await until(bob, joined_by("cat"))
                    (state,) = [m for m in seen if m["type"] == "room_state"]
                    shown = {u["user_id"]: u["status"] for u in state["users"]}
                    assert shown == {"ann": "busy", "bob": "online", "cat": "online"}


async def test_typing_refreshed_through_another_node_ends_once_on_the_refreshed_timer(
    server_url: str, room: str
) -> None:
    """Ann starts typing through her tab on the first node and starts again through her tab on the
    second: the first node's timer must not end it, only the second's, once."""
    async with typing_on_two_nodes(server_url, room, typing_timeout=1.0) as (_, second, ann_tab, bob):
        await send(ann_tab, {"type": "typing_start", "room": room, "cell_id": "A1"})
        await until(bob, of_type("user_typing_start"))
        await until(bob, of_type("user_typing_stop"))
        typing = await second.engine.node.read_stream(volatile_stream(room_stream(room)))
        starts = [e for e in typing if e.type == TYPING_STARTED]
        (stop,) = [e for e in typing if e.type == TYPING_STOPPED]
        assert stop.idempotency_key == f"typing-expired:v{starts[-1].stream_version}"


async def test_typing_stopped_through_another_node_is_not_ended_again(server_url: str, room: str) -> None:
    async with typing_on_two_nodes(server_url, room, typing_timeout=0.5) as (first, _, ann_tab, bob):
        await send(ann_tab, {"type": "typing_stop", "room": room, "cell_id": "A1"})
        await until(bob, of_type("user_typing_stop"))
        await asyncio.sleep(1.5)  # three timeouts: the first node's timer would have fired by now
        assert "user_typing_stop" not in types(await pending(bob))
        typing = await first.engine.node.read_stream(volatile_stream(room_stream(room)))
        assert [e.data["reason"] for e in typing if e.type == TYPING_STOPPED] == [STOPPED]


@contextlib.asynccontextmanager
async def typing_on_two_nodes(
    server_url: str, room: str, *, typing_timeout: float
) -> AsyncIterator[tuple[Server, Server, ClientConnection, ClientConnection]]:
    """Two nodes; ann with a tab on each, bob on the second, all in `room`; ann typing in A1 through
    her tab on the first, which bob has heard. Yields the nodes, her tab on the second, and bob."""
    async with fresh_database(server_url) as url:
        settings = make_settings(url, typing_timeout_seconds=typing_timeout)
        async with (
            serve(settings) as first,
            serve(settings) as second,
            first.connect(first.token("ann")) as ann,
            second.connect(second.token("ann")) as ann_tab,
            second.connect(second.token("bob")) as bob,
        ):
            await greet(ann), await greet(ann_tab), await greet(bob)
            for ws in (ann, ann_tab, bob):
                await join(ws, room)
            await send(ann, {"type": "typing_start", "room": room, "cell_id": "A1"})
            await until(bob, of_type("user_typing_start"))
            yield first, second, ann_tab, bob


def joined_by(user_id: str) -> Callable[[Message], bool]:
    return lambda m: m["type"] == "user_joined" and m["user"]["user_id"] == user_id
