"""`join_room since` against the real event log while another client keeps writing: the joiner gets
`room_state`, every room event after `since` exactly once and in order, `replay_complete`, then live
events, with no gap and no duplicate between replay and live (docs/protocol.md, envelope additions)."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection

from engine.log.store import EventStore
from engine.model.streams import room_stream
from tests.api.conftest import Server, request
from tests.api.live_helpers import Message, declare, greet, join, of_type, pending, resume, send, until

ROUNDS = 40  # leave + join each: 80 room events written while the joiner resumes


async def churn(ws: ClientConnection, room: str, rounds: int, started: asyncio.Event) -> None:
    """Leave and rejoin `room` `rounds` times, each step acknowledged before the next."""
    for i in range(rounds):
        for kind in ("leave_room", "join_room"):
            await send(ws, {"type": kind, "room_id": room, "client_msg_id": f"{room}-{kind}-{i}"})
            await until(ws, of_type("ack", client_msg_id=f"{room}-{kind}-{i}"))
            started.set()


def room_event_seqs(messages: list[Message], room: str) -> list[int]:
    """The seq of each room event delivered: every event here is a join or a leave, and each becomes
    exactly one `user_joined` or `user_left` (nobody in this test has two tabs)."""
    return [
        int(m["seq"]) for m in messages if m["type"] in ("user_joined", "user_left") and m["room_id"] == room
    ]


async def test_resume_with_since_while_another_client_writes_delivers_every_seq_once_in_order(
    server: Server, store: EventStore, room: str
) -> None:
    async with (
        server.connect(server.token("writer")) as writer,
        server.connect(server.token("reader")) as reader,
    ):
        await greet(writer)
        await greet(reader)
        await join(writer, room)
        for i in range(3):  # history before the resume point and after it
            await request(writer, {"type": "leave_room", "room_id": room})
            await join(writer, room, client_msg_id=f"{room}-pre-{i}")
            await until(writer, of_type("ack", client_msg_id=f"{room}-pre-{i}"))
        since = 3

        started = asyncio.Event()
        writing = asyncio.create_task(churn(writer, room, ROUNDS, started))
        await started.wait()
        replayed = await resume(reader, room, since)
        caught_up = int(replayed[-1]["seq"])
        assert caught_up >= 7
        assert replayed[-1] == {"type": "replay_complete", "room_id": room, "seq": caught_up}
        await writing
        live = await pending(reader)

        head = len(await store.read_stream(room_stream(room)))
        assert head == 7 + 2 * ROUNDS + 1  # the reader's own join is one of them
        in_replay = room_event_seqs(replayed, room)
        in_live = room_event_seqs(live, room)
        assert in_replay == list(range(since + 1, caught_up + 1))
        assert in_live == list(range(caught_up + 1, head + 1))
        # Live joins and leaves come with the room as of that event; replayed ones do not.
        states = [m for m in live if m["type"] == "room_state"]
        assert [s["seq"] for s in states] == in_live


async def test_resume_replays_events_as_they_were_sent_live(server: Server, room: str) -> None:
    async with server.connect(server.token("alice")) as alice, server.connect(server.token("bob")) as bob:
        await greet(alice)
        await greet(bob)
        await join(alice, room)
        await join(bob, room, client_msg_id=f"{room}-b1")
        live = await pending(alice)  # room_state and user_joined for seq 2, as alice saw them live
        await request(alice, {"type": "leave_room", "room_id": room})
        await pending(bob)

        replayed = await resume(alice, room, since=1)
        # As live members saw them, client_msg_id included, without the historical room_state.
        assert replayed[:1] == [m for m in live if m["type"] != "room_state"]
        assert [m["type"] for m in replayed[1:-2]] == ["user_left", "user_joined"]
        assert [u["user_id"] for u in replayed[-2]["users"]] == ["bob", "alice"]
        assert replayed[-1] == {"type": "replay_complete", "room_id": room, "seq": 4}


async def test_resume_shows_each_join_with_the_status_the_joiner_had_then(server: Server, room: str) -> None:
    """History as it was: a replayed join shows the joiner as the members saw them join, with the
    status they had declared then, though they declared another since; only the `room_state` that
    ends the replay shows the room as it is now."""
    ann, bob = f"{room}-ann", f"{room}-bob"  # users of their own: a status outlives its test
    async with server.connect(server.token(ann)) as ann_ws, server.connect(server.token(bob)) as bob_ws:
        await greet(ann_ws)
        await greet(bob_ws)
        await join(ann_ws, room)
        await declare(bob_ws, "away")
        await join(bob_ws, room)
        live = [m for m in await pending(ann_ws) if m["type"] == "user_joined"]
        assert [m["user"]["status"] for m in live] == ["away"]
        await declare(bob_ws, "busy")
        assert [m["status"] for m in await pending(ann_ws)] == ["busy"]  # its user_status_changed
        await request(ann_ws, {"type": "leave_room", "room_id": room})

        replayed = await resume(ann_ws, room, since=1)
        assert [m for m in replayed if m["type"] == "user_joined" and m["user"]["user_id"] == bob] == live
        assert {u["user_id"]: u["status"] for u in replayed[-2]["users"]} == {bob: "busy", ann: "online"}


async def test_since_beyond_the_room_seq_is_a_validation_error(server: Server, room: str) -> None:
    async with server.connect(server.token("alice")) as alice:
        await greet(alice)
        await join(alice, room)
        reply = await request(alice, {"type": "join_room", "room_id": room, "since": 2, "client_msg_id": "j"})
        assert (reply["code"], reply["client_msg_id"], reply["seq"]) == ("VALIDATION_ERROR", "j", 1)
