"""What the server does about rooms that do not exist, clients that fall behind and clients that die,
each against its own real server (uvicorn, real `websockets` clients, the session's PostgreSQL):

- ROOM_AUTO_CREATE=false: joining a room with no events is ROOM_NOT_FOUND and appends nothing;
- a slow consumer is closed with 4008 and `{"last_seq": ...}` while the others get everything, and it
  resumes from that seq with `join_room since` without a gap;
- a client that closes normally while the server is still sending it a burst left as `disconnected`,
  not as a slow consumer, though the server's next send to it failed;
- keepalive: a client that stops answering pings is closed by the server and leaves its rooms.

No timing assertions: every wait has a hang guard (a receive timeout), nothing measures how long.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from engine.fanout.hub import Hub
from engine.log.store import EventStore
from engine.model.catalogue import DISCONNECTED, SLOW_CONSUMER, USER_JOINED_ROOM, USER_LEFT_ROOM
from engine.model.streams import room_stream
from engine.protocol.close_codes import CloseCode
from tests.api.conftest import (
    RECEIVE_TIMEOUT,
    Server,
    make_settings,
    receive,
    request,
    serve,
    wait_for_events,
)
from tests.api.live_helpers import Message, greet, join, of_type, pending, resume, send, types, until
from tests.api.rest_helpers import rest

# Every test here writes more than the seed's 60 messages a minute allow one user.
UNLIMITED: dict[str, Any] = {
    "websocket_requests_per_minute": 1_000_000,
    "websocket_requests_per_hour": 1_000_000,
}
ROOM_EVENTS = ("cell_updated", "user_joined", "user_left")


def room_event_seqs(messages: list[Message], room: str) -> list[int]:
    return [int(m["seq"]) for m in messages if m["type"] in ROOM_EVENTS and m.get("room_id") == room]


def cells(messages: list[Message]) -> list[str]:
    return [str(m["cell_id"]) for m in messages if m["type"] == "cell_updated"]


# ROOM_AUTO_CREATE=false.


async def test_without_auto_create_an_unknown_room_is_room_not_found_and_a_room_with_events_joins(
    server: Server, database_url: str, store: EventStore, room: str
) -> None:
    settings = make_settings(database_url, room_auto_create=False, **UNLIMITED)
    async with serve(settings) as strict, strict.connect(strict.token("alice")) as alice:
        await greet(alice)
        refused = await request(alice, {"type": "join_room", "room_id": room, "client_msg_id": "j-1"})
        assert (refused["type"], refused["code"], refused["client_msg_id"]) == (
            "error",
            "ROOM_NOT_FOUND",
            "j-1",
        )
        assert await store.read_stream(room_stream(room)) == []  # nothing appended, nothing created
        assert (await request(alice, {"type": "ping"}))["type"] == "pong"  # the socket stays open

        # The room gets its first event elsewhere (the suite's server creates rooms by joining):
        # from then on it exists, also for the node that refused it a moment ago.
        async with server.connect(server.token("bob")) as bob:
            await greet(bob)
            await join(bob, room)
            state = await join(alice, room, client_msg_id="j-2")
            assert (state["seq"], state["total_users"]) == (2, 2)
            assert (await until(alice, of_type("ack", client_msg_id="j-2")))[-1]["seq"] == 2
        events = await wait_for_events(store, room_stream(room), 3)
        assert [(e.type, e.data["user_id"]) for e in events[:2]] == [
            (USER_JOINED_ROOM, "bob"),
            (USER_JOINED_ROOM, "alice"),
        ]


# Slow consumers.

FRAME_VALUE = "x" * 32_000  # big frames fill the slow client's socket buffers after a few hundred KiB
MAX_UPDATES = 2_000  # hang guard: far more than the buffers between server and client can hold
AFTER_CLOSE = 5  # updates written once the slow consumer is closed: only a resume can deliver them


def is_closed(hub: Hub, connection_id: str) -> bool:
    try:
        return hub.subscriber(connection_id).closed
    except KeyError:  # already unsubscribed
        return True


async def update(writer: ClientConnection, room: str, sheet: str, cell_id: str, value: str) -> None:
    """One cell_update, read up to its ack (the writer is a member too, so it keeps reading)."""
    cmid = f"{sheet}-{cell_id}"
    message = {"type": "cell_update", "sheet_id": sheet, "cell_id": cell_id, "value": value, "room": room}
    await send(writer, {**message, "client_msg_id": cmid})
    reply = (await until(writer, of_type("ack", client_msg_id=cmid)))[-1]
    assert reply["room_id"] == room


async def write_until_closed(
    hub: Hub, slow_id: str, writer: ClientConnection, room: str, sheet: str
) -> list[str]:
    """Big cells, one at a time, until the slow connection is closed; the cells written."""
    written: list[str] = []
    while not is_closed(hub, slow_id):
        assert len(written) < MAX_UPDATES, "the slow consumer was never closed"
        written.append(f"A{len(written)}")
        await update(writer, room, sheet, written[-1], FRAME_VALUE)
    return written


async def read_until_end(ws: ClientConnection) -> list[Message]:
    return await until(ws, of_type("cell_updated", cell_id="END"))


async def test_slow_consumer_is_closed_with_4008_and_resumes_from_last_seq_without_a_gap(
    database_url: str, store: EventStore, room: str
) -> None:
    # A small queue per connection on the server, and a slow client that buffers one frame: once its
    # socket buffers are full, its queue fills and the next durable event closes it.
    settings = make_settings(database_url, fanout_max_queue=8, **UNLIMITED)
    sheet = f"sheet-{room}"
    async with serve(settings) as srv:
        hub = srv.engine.hub
        async with (
            srv.connect(srv.token("writer")) as writer,
            srv.connect(srv.token("fast")) as fast,
            srv.connect(srv.token("slow"), max_queue=1) as slow,
        ):
            await greet(writer)
            await greet(fast)
            slow_id = await greet(slow)
            await join(writer, room)
            await join(fast, room)
            joined = await join(slow, room)  # the slow client reads nothing more until it is closed
            await pending(writer)
            await pending(fast)
            fast_reading = asyncio.create_task(read_until_end(fast))

            written = await write_until_closed(hub, slow_id, writer, room, sheet)

            # The slow client reads again: everything up to its last delivered seq, then the close.
            before_close: list[Message] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    before_close.append(await receive(slow))
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.SLOW_CONSUMER
            reason = json.loads(closed.value.rcvd.reason)
            last_seq = reason["last_seq"][room]
            seen = room_event_seqs(before_close, room)
            assert seen == list(range(joined["seq"] + 1, last_seq + 1))  # in order, none missing

            for i in range(AFTER_CLOSE):
                written.append(f"B{i}")
                await update(writer, room, sheet, written[-1], "small")
            written.append("END")
            await update(writer, room, sheet, "END", "done")

            # The fast member was never held up or dropped: every cell_updated, in seq order.
            heard = await asyncio.wait_for(fast_reading, RECEIVE_TIMEOUT)
            assert cells(heard) == written
            seqs = room_event_seqs(heard, room)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            assert "error" not in types(heard)

        # The slow client reconnects and resumes: the rest, exactly once, then replay_complete.
        async with srv.connect(srv.token("slow")) as again:
            await greet(again)
            replayed = await resume(again, room, since=last_seq)
            caught_up = int(replayed[-1]["seq"])
            assert room_event_seqs(replayed, room) == list(range(last_seq + 1, caught_up + 1))
            assert cells(before_close) + cells(replayed) == written
            assert caught_up == len(await store.read_stream(room_stream(room)))


async def test_a_slow_consumer_leaves_its_rooms_as_soon_as_it_is_closed(
    database_url: str, store: EventStore, room: str
) -> None:
    # Its client reads nothing and never answers the close: the others still hear it leave at once,
    # not when the keepalive gives up on the socket.
    settings = make_settings(database_url, fanout_max_queue=8, **UNLIMITED)
    sheet = f"sheet-{room}"
    async with serve(settings) as srv:
        hub = srv.engine.hub
        async with (
            srv.connect(srv.token("writer")) as writer,
            srv.connect(srv.token("slow"), max_queue=1) as slow,
        ):
            await greet(writer)
            slow_id = await greet(slow)
            await join(writer, room)
            await join(slow, room)
            await pending(writer)
            await write_until_closed(hub, slow_id, writer, room, sheet)
            left = (await until(writer, of_type("user_left", user_id="slow")))[-1]
            assert left["room_id"] == room
            members = srv.engine.node.connections
            assert slow_id not in members
            recorded = await store.read_stream(room_stream(room))
            leaves = [e for e in recorded if e.type == USER_LEFT_ROOM]
            assert [(e.data["user_id"], e.data["reason"]) for e in leaves] == [("slow", SLOW_CONSUMER)]
        # The sockets' ends add the writer's leave, and nothing more for the slow one.
        ended = await wait_for_events(store, room_stream(room), len(recorded) + 1)
        leaves = [e for e in ended if e.type == USER_LEFT_ROOM]
        assert [e.data["user_id"] for e in leaves] == ["slow", "writer"]


BURST_VALUE = "y" * 60_000  # a broadcast's frame stays under MAX_MESSAGE_BYTES
BURST = 150  # such broadcasts: far more than the socket buffers between server and client hold


async def broadcast_burst(srv: Server, room: str) -> None:
    """BURST broadcasts to the room, posted 25 at a time (they share commits)."""
    for _ in range(0, BURST, 25):
        body = {"type": "news", "text": BURST_VALUE}
        posted = await asyncio.gather(
            *(rest(srv, "POST", f"/ws/rooms/{room}/broadcast", json=body) for _ in range(25))
        )
        assert all(p.status_code == 200 for p in posted), [p.text for p in posted]


async def test_a_client_that_closes_normally_while_it_is_sent_a_burst_leaves_as_disconnected(
    database_url: str, store: EventStore, db_engine: AsyncEngine, room: str
) -> None:
    # The leave's reason is the audit's record of why a user left. A client that closed its socket
    # (1000) while the server was still writing it a burst disconnected: the send that then failed on
    # its closed socket does not make it a slow consumer.
    settings = make_settings(database_url, **UNLIMITED)
    async with serve(settings) as srv:
        hub = srv.engine.hub
        sink_failures = hub.totals.sink_failures
        async with srv.connect(srv.token("reader"), max_queue=None) as reader:
            reader_id = await greet(reader)
            await join(reader, room)
            # The reader stops reading while a burst is published to the room: the server's socket
            # buffers fill and the rest waits in the reader's queue.
            reader.transport.pause_reading()
            await broadcast_burst(srv, room)
            assert hub.subscriber(reader_id).depth > 0  # still being sent
            async with db_engine.connect() as gate:
                # Appends wait while the test holds the log's head: the reader's session, answering
                # the message it read before the close, cannot end (and record its leave) meanwhile,
                # so whatever records the leave first is the server's failed send.
                await gate.execute(text("SELECT partition FROM log_head FOR UPDATE"))
                await send(reader, {"type": "cursor_move", "room": room, "x": 1, "y": 2})
                closing = asyncio.create_task(reader.close())  # 1000: a close frame behind the message
                async with asyncio.timeout(RECEIVE_TIMEOUT):
                    while True:  # its close frame is written before it reads again
                        if reader.state is State.CLOSING:
                            break
                        await asyncio.sleep(0)
                reader.transport.resume_reading()  # the burst drains, and the server's next send fails
                async with asyncio.timeout(RECEIVE_TIMEOUT):
                    await closing
                    while True:  # a send failed, and the reader left its rooms on it
                        if (
                            hub.totals.sink_failures > sink_failures
                            and reader_id not in srv.engine.node.connections
                        ):
                            break
                        await asyncio.sleep(0.01)
                await gate.rollback()

        events = await wait_for_events(store, room_stream(room), BURST + 2)
        leaves = [(e.data["user_id"], e.data["reason"]) for e in events if e.type == USER_LEFT_ROOM]
        assert leaves == [("reader", DISCONNECTED)]


# Keepalive.


async def test_a_client_that_stops_answering_pings_is_closed_and_leaves_its_rooms(
    database_url: str, store: EventStore, room: str
) -> None:
    settings = make_settings(
        database_url, websocket_ping_interval=0.5, websocket_ping_timeout=1.0, **UNLIMITED
    )
    async with (
        serve(settings) as srv,
        srv.connect(srv.token("alice")) as alice,
        # No pings of its own, so the only traffic on it is the server's.
        srv.connect(srv.token("ghost"), ping_interval=None) as ghost,
    ):
        await greet(alice)
        ghost_id = await greet(ghost)
        await join(alice, room)
        await join(ghost, room)
        # The ghost's process is alive but stops reading: it never sees the server's pings, so
        # it never answers them (a half-open TCP connection, a frozen tab).
        ghost.transport.pause_reading()

        heard = await until(alice, of_type("user_left", user_id="ghost"))
        assert types(heard) == ["room_state", "user_joined", "room_state", "user_left"]
        events = await wait_for_events(store, room_stream(room), 3)
        assert [e.type for e in events] == [USER_JOINED_ROOM, USER_JOINED_ROOM, USER_LEFT_ROOM]
        assert events[2].data == {
            "room_id": room,
            "user_id": "ghost",
            "connection_id": ghost_id,
            "reason": "disconnected",
        }

        # Reading again, the ghost finds the server's close: 1011, keepalive ping timeout.
        ghost.transport.resume_reading()
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await ghost.wait_closed()
        assert ghost.close_code == 1011
        # Alice answered every ping (her client does so by itself): still connected.
        assert (await request(alice, {"type": "ping"}))["type"] == "pong"
